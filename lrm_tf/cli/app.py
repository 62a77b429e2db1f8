"""The program: parse the flags, build the settings, start TensorFlow, run the mode, and turn the
expected failures into one line on stderr and an exit status (2: bad input, 3: missing data,
4: a diverging run, 5: a run that did not learn: training accuracy at chance, or a loss mostly
weight decay and not falling; run_state.json says "diverged" or "not_learning"). A training run
stopped by an unexpected error or Ctrl-C keeps its traceback and says "failed" or "interrupted",
with the error, in run_state.json; the same command resumes it."""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile

from absl import app, flags

from lrm_tf import config
from lrm_tf.cli import settings as settings_lib
from lrm_tf.cli.flags import FLAGS, UsageError, build
from lrm_tf.cli.modes import MODES


def validate() -> settings_lib.Settings:
    """Checks every flag and builds the settings; raises UsageError naming the flag."""
    return settings_lib.from_flags()


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silences TensorFlow's native start-up logs (written to fd 2 before its log level applies)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _setup_tf():
    """Starts TensorFlow with the process-wide settings the flags ask for (devices, determinism,
    seed): the only place that changes global state."""
    with _quiet_native_stderr():
        import keras
        import tensorflow as tf

        if FLAGS.strategy == "multiworker":  # collective ops before TensorFlow starts its devices
            settings_lib.strategy_for(build(config.DistributeConfig))
        if FLAGS.cpu_replicas > 1 and FLAGS.strategy == "mirrored":
            from lrm_tf.training.distribute import split_logical_cpus

            split_logical_cpus(FLAGS.cpu_replicas)
        tf.config.list_logical_devices()  # device initialisation logs (e.g. no CUDA driver)
    from absl import logging

    logging.set_verbosity(logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    if FLAGS.deterministic:
        tf.config.experimental.enable_op_determinism()
        # Op determinism misses one case: Grappler's arithmetic optimizer rewrites chains of adds
        # (the loss's terms) into AddN, which starts its sum from whichever input buffer it can
        # reuse at run time, so the logged loss's last bit followed thread timing (BUILD_NOTES.md,
        # "Crash consistency").
        tf.config.optimizer.set_experimental_options({"arithmetic_optimization": False})
    keras.utils.set_random_seed(FLAGS.seed)


def main(argv):
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments: {' '.join(argv[1:])} (flags look like --name=value)")
    s = validate()
    from lrm_tf.report.rundir import RunDir

    run = RunDir(FLAGS.model_dir)
    if s.distribute.strategy == "multiworker":
        from lrm_tf.training import distribute

        if not distribute.is_chief(s.strategy()):
            # Every worker runs the whole program (collectives need all of them); only the
            # chief's files are kept, the others write to a scratch folder.
            task_type, task_id = distribute.task(s.strategy())
            run = RunDir(tempfile.mkdtemp(prefix=f"lrm_tf_{task_type}{task_id}_"))
    MODES[FLAGS.mode](s, run)


def parse_flags(argv):
    """absl parsing with nested flagfiles resolved relative to the file that includes them, then
    the dataset's recipe for the optimisation settings a training run is not given
    (`lrm_tf.cli.sources`); a parse error is one line and exit status 2. `--help` prints the
    grouped flags (`lrm_tf.cli.help`) and exits 0; `--helpfull` is absl's."""
    from lrm_tf.cli import help as grouped_help
    from lrm_tf.cli import sources
    from lrm_tf.cli.flagfile import expand_with_origins

    if grouped_help.wants_help(argv):
        print(grouped_help.render(), end="")
        sys.exit(0)
    try:
        args = expand_with_origins(list(argv))
        parsed = FLAGS([arg for arg, _ in args])
        sources.record_origins(args)
        sources.apply_recipe()
        return parsed
    except (flags.Error, ValueError) as e:
        message = str(e).replace("ERROR:: Unable to open flagfile", "--flagfile: cannot open the file")
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def _guarded(argv):
    """main() with the expected failures turned into one line on stderr and an exit status."""
    try:
        _setup_tf()  # first: it silences TensorFlow's start-up logs, so nothing imports TF before it
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    from lrm_tf.data import DataError
    from lrm_tf.report.rundir import RunDir
    from lrm_tf.training import DivergenceError, NotLearningError

    try:
        main(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)
    except DivergenceError as e:
        RunDir(FLAGS.model_dir).set_state("diverged", message=str(e))
        print(f"error: {e}", file=sys.stderr)
        sys.exit(4)
    except NotLearningError as e:
        RunDir(FLAGS.model_dir).set_state("not_learning", message=e.render("--"), **e.stats)
        print(f"error: {e.render('--')}", file=sys.stderr)
        sys.exit(5)
    except (Exception, KeyboardInterrupt) as e:
        _record_stop(RunDir(FLAGS.model_dir), e)
        raise


def _record_stop(run, error: BaseException) -> None:
    """Marks a training run that an unexpected error or Ctrl-C stopped, so run_state.json does
    not say "training" for a run nobody is training (a kill leaves "training": nothing runs)."""
    if FLAGS.mode != "train" or FLAGS.strategy == "multiworker":  # a worker's error is not the run's
        return
    if run.read_json(run.state_json, {}).get("status") != "training":
        return
    status = "interrupted" if isinstance(error, KeyboardInterrupt) else "failed"
    run.set_state(status, message=f"{type(error).__name__}: {error}"[:1000])


def run_main():
    app.run(_guarded, flags_parser=parse_flags)


def run_argv(argv) -> int:
    """Runs the program in this process with `argv` (argv[0] is the program name); returns the
    exit status. Flags are reset first, so it can be called repeatedly (tests, notebooks)."""
    FLAGS.unparse_flags()
    settings_lib.clear_cache()
    try:
        _guarded(parse_flags(list(argv)))
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    return 0
