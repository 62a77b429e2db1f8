"""The command line's log redirected to a file (issue 15, criterion 1): evaluation with curves,
transfer, audit and analyze on a tiny digits model leave plain lines, no ESC, carriage return
or backspace (Keras' progress bar wrote all three), and each step's last progress line."""

import dataclasses
import re

import keras
import pytest
from run_utils import run_main_to_file

from lrm_tf import export
from lrm_tf.config import AuditConfig
from tests.test_audit import CONFIG as AUDIT
from tests.test_audit import SPSA as AUDIT_SPSA


def _flags(config, default) -> list[str]:
    """The command line of the fields of `config` that differ from `default`."""
    values = {f.name: getattr(config, f.name) for f in dataclasses.fields(config)}
    return [
        f"--{name}=" + (",".join(map(str, v)) if isinstance(v, tuple) else str(v))
        for name, v in values.items()
        if v != getattr(default, name)
    ]


MODES = {
    "eval": (
        ["--eval_attacks=clean,pgd5_xent", "--curves=eps", "--curve_steps=3"],
        ["pgd5_xent", "curve eps"],
    ),
    "transfer": (["--eval_attacks=pgd5_xent"], ["transfer pgd5_xent"]),
    "audit": ([*_flags(AUDIT, AuditConfig()), f"--spsa_samples={AUDIT_SPSA.spsa_samples}"], ["audit"]),
    "analyze": (["--analyses=logits,eps_l,landscape"], ["analyses"]),
}


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    path = str(tmp_path_factory.mktemp("progress") / "saved_model")
    export.export_saved_model(model, path)
    return path


@pytest.mark.parametrize("mode", list(MODES))
def test_redirected_log_is_plain_lines(mode, saved_model, tmp_path):
    flags, steps = MODES[mode]
    log = tmp_path / f"{mode}.log"
    args = [
        f"--mode={mode}",
        "--dataset=digits",
        f"--load_from={saved_model}",
        f"--model_dir={tmp_path / mode}",
        "--eval_examples=40",
        "--eval_batch_size=4",
        *flags,
    ]
    returncode, text = run_main_to_file(log, *args)
    assert returncode == 0, text[-3000:].decode(errors="replace")
    assert not re.search(rb"[\x1b\r\x08]", text), "control characters in the log"
    for step in steps:  # the step's last line: 100%, the elapsed time
        assert re.search(rf"^{step}: 100% .*\[[\dhms]+\]$".encode(), text, re.M), (
            step,
            text.decode()[-3000:],
        )
