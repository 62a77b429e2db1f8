"""The one entry point: `python -m lrm_tf.main --flagfile=flags/<experiment>.cfg [--flag=value ...]`.

The program lives in `lrm_tf.cli`; this module only sets the two TensorFlow environment switches
the command line wants before TensorFlow is imported, which a library import must not do:
TensorFlow's C++ start-up chatter off, and its oneDNN CPU kernels on (TensorFlow leaves them off
on CPUs without AVX-512 VNNI/BF16/AMX, where they were faster here: BUILD_NOTES.md, "oneDNN").
An explicit TF_ENABLE_ONEDNN_OPTS or TF_CPP_MIN_LOG_LEVEL wins.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

from absl import flags as _absl_flags  # noqa: E402

from lrm_tf.cli import flags as _cli_flags  # noqa: E402
from lrm_tf.cli import modes as _cli_modes  # noqa: E402
from lrm_tf.cli.app import main, parse_flags, run_argv, run_main, validate  # noqa: E402
from lrm_tf.cli.flags import FLAGS, UsageError  # noqa: E402

# absl's `--helpshort` lists the main module's key flags: all of the program's (`--help` is
# lrm_tf.cli.help's grouped list).
_absl_flags.adopt_module_key_flags(_cli_flags)
_absl_flags.adopt_module_key_flags(_cli_modes)

__all__ = ["FLAGS", "UsageError", "main", "parse_flags", "run_argv", "run_main", "validate"]

if __name__ == "__main__":
    run_main()
