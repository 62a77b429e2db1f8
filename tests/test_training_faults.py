"""Faults in long runs: divergence, SIGKILL at every kill point (issue 16), and --deterministic
reproducibility."""

import csv
import json
import os
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest
import tensorflow as tf
from run_utils import REPO, run_main

from lrm_tf import killpoints

BASE = [
    "--dataset=digits",
    "--model=mnist_cnn",
    "--batch_size=32",
    "--optimizer=momentum",
    "--lr_values=0.02",
    "--lr_boundaries=",
    "--weight_decay=1e-4",
    "--eval_attacks=clean",
    "--verbose=2",
]
DETERMINISTIC = [
    *BASE,
    "--deterministic",
    "--train_epochs=3",
    "--checkpoint_every_steps=7",
    "--seed=4",
    "--noise_sigma=0.1",
    "--label_smoothing=0.1",
]  # random terms on too


def _weights(model_dir):
    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    # Model weights (reached through the optimizer or the net) and optimizer state.
    return {
        k: reader.get_tensor(k)
        for k in reader.get_variable_to_shape_map()
        if k not in ("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter/.ATTRIBUTES/VARIABLE_VALUE")
    }


def _metrics(model_dir):
    with open(os.path.join(model_dir, "metrics.csv")) as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def _results(model_dir):
    with open(os.path.join(model_dir, "results.json")) as f:
        return {k: (v["accuracy"], v["examples"]) for k, v in json.load(f).items()}


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    model_dir = str(tmp_path_factory.mktemp("a") / "run")
    run_main(*DETERMINISTIC, f"--model_dir={model_dir}")
    return model_dir


def test_deterministic_runs_are_identical(uninterrupted, tmp_path):
    other = str(tmp_path / "run")
    run_main(*DETERMINISTIC, f"--model_dir={other}")
    a, b = _weights(uninterrupted), _weights(other)
    assert a.keys() == b.keys() and len(a) >= 8
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert _metrics(uninterrupted) == _metrics(other)
    assert _results(uninterrupted) == _results(other)


# Kill points (lrm_tf/killpoints.py) as LRM_TF_KILL_AT values, each a chain of kills of the same
# command (the last rerun is not killed). Saves of DETERMINISTIC (44-step epochs, every 7 steps):
# 7, 14, ..., 42, 44 (7th: epoch 1's end), 49, 56 (9th), ..., 88 (14th: epoch 2's end), ..., 132.
KILLS = {
    # The window of issue 16 (second run): epoch 1's row is on disk (in the sidecar), its
    # checkpoint is not. The first run was killed before training.
    "started_then_row_before_checkpoint": ["started", "checkpoint_sidecar:7"],
    "mid_checkpoint_mid_epoch": ["checkpoint_files:9"],
    "checkpoint_before_csv": ["checkpoint:14"],
    "after_last_row": ["metrics_csv:3"],
    # The third kill finds a complete export in place and has moved it aside.
    "export": ["export_saved_model", "export_keras", "export_swap"],
    "evaluation_and_results": ["evaluation", "report", "finishing"],
}


def _run_killed(model_dir, kill_at):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", killpoints.ENV: kill_at}
    proc = subprocess.run(
        [sys.executable, "-m", "lrm_tf.main", *DETERMINISTIC, f"--model_dir={model_dir}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == -signal.SIGKILL, f"{kill_at}: exited {proc.returncode}\n{proc.stderr[-2000:]}"


def _committed_step(model_dir):
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    return (int(latest.rsplit("-", 1)[1]), latest) if latest else (0, None)


def _assert_one_state(model_dir, reference):
    """What a kill left describes the last complete checkpoint: metrics.csv holds no row beyond
    it (and at most its own row is missing, restored from the sidecar on resume); exports and
    results are complete or absent."""
    step, latest = _committed_step(model_dir)
    expected = [r for r in _metrics(reference) if int(r["step"]) <= step]
    rows = _metrics(model_dir) if os.path.exists(os.path.join(model_dir, "metrics.csv")) else []
    lagging = expected[:-1] if expected and expected[-1]["step"] == str(step) else expected
    assert rows in (expected, lagging), f"metrics.csv {rows} vs checkpoint at step {step}"
    if latest:  # the checkpoint carries every row up to its step, its own included
        sidecar = json.load(open(latest + ".metrics.json"))
        held = [{k: v for k, v in zip(sidecar["columns"], r) if k != "seconds"} for r in sidecar["rows"]]
        assert held == expected
    saved = os.path.join(model_dir, "saved_model")
    if os.path.exists(saved):
        assert os.path.isfile(os.path.join(saved, "saved_model.pb"))
        assert os.path.isfile(os.path.join(saved, "variables", "variables.index"))
    keras_file = os.path.join(model_dir, "model.keras")
    if os.path.exists(keras_file):
        with zipfile.ZipFile(keras_file) as z:
            assert z.testzip() is None
    if os.path.exists(os.path.join(model_dir, "results.json")):
        assert _results_full(model_dir) == _results_full(reference)
    assert json.load(open(os.path.join(model_dir, "run_state.json")))["status"] == "training"


def _results_full(model_dir):
    """results.json without its timings."""

    def strip(v):
        return {k: strip(x) for k, x in v.items() if k != "seconds"} if isinstance(v, dict) else v

    with open(os.path.join(model_dir, "results.json")) as f:
        return strip(json.load(f))


def _keras_weights(model_dir):
    from lrm_tf.export import load_keras

    return load_keras(os.path.join(model_dir, "model.keras")).get_weights()


def test_every_kill_point_is_tested():
    tested_elsewhere = {"reproduce_row"}  # the table runner's: tests/reproduce/test_reproduce.py
    chained = {k.split(":")[0] for chain in KILLS.values() for k in chain}
    assert chained == set(killpoints.POINTS) - tested_elsewhere
    assert killpoints.parse("checkpoint:3") == ("checkpoint", 3)
    for bad in ("checkpiont", "checkpoint:0", "checkpoint:x"):
        with pytest.raises(ValueError, match=killpoints.ENV):
            killpoints.parse(bad)


@pytest.mark.parametrize("case", list(KILLS))
def test_killed_at_a_kill_point_then_rerun_matches_uninterrupted(uninterrupted, tmp_path, case):
    """Issue 16: killed right after a named write, the same command ends identical to an
    uninterrupted run (metrics.csv, results.json, checkpoint and exported weights)."""
    model_dir = str(tmp_path / "run")
    for kill_at in KILLS[case]:
        _run_killed(model_dir, kill_at)
        _assert_one_state(model_dir, uninterrupted)
    step, _ = _committed_step(model_dir)
    out = run_main(*DETERMINISTIC, f"--model_dir={model_dir}")
    if step:
        assert f"at step {step} of 132" in out.stdout
    a, b = _weights(uninterrupted), _weights(model_dir)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    for x, y in zip(_keras_weights(uninterrupted), _keras_weights(model_dir), strict=True):
        np.testing.assert_array_equal(x, y)
    assert _metrics(uninterrupted) == _metrics(model_dir)
    assert _results_full(uninterrupted) == _results_full(model_dir)
    assert json.load(open(os.path.join(model_dir, "run_state.json")))["status"] == "finished"
    left = [f for f in os.listdir(model_dir) if f.endswith((".tmp", ".old", ".tmp.keras"))]
    assert not left, left


def test_divergence_stops_with_message_and_keeps_last_good_checkpoint(tmp_path):
    model_dir = str(tmp_path / "run")
    # Epoch 1 at lr 0.02 is fine; epoch 2 at lr 1e4 blows up.
    proc = run_main(
        *BASE,
        "--train_epochs=3",
        "--lr_values=0.02,1e4",
        "--lr_boundaries=1",
        f"--model_dir={model_dir}",
        check=False,
    )
    assert proc.returncode == 4
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and "diverged at step" in lines[0] and "ce_clean=" in lines[0]
    assert "Traceback" not in proc.stderr
    state = json.load(open(os.path.join(model_dir, "run_state.json")))
    assert state["status"] == "diverged"
    weights = _weights(model_dir)
    assert all(np.all(np.isfinite(w)) for w in weights.values())
    assert tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints")).endswith("ckpt-44")
    # Nothing is lost: the good checkpoint exports to a working SavedModel.
    run_main(*BASE, "--mode=export", f"--model_dir={model_dir}")
    model = tf.saved_model.load(os.path.join(model_dir, "saved_model"))
    assert np.all(np.isfinite(model(tf.zeros([2, 8, 8, 1])).numpy()))


@pytest.mark.parametrize(
    "error,status", [(RuntimeError("disk full"), "failed"), (KeyboardInterrupt(), "interrupted")]
)
def test_an_unexpected_stop_is_recorded_and_the_same_command_resumes(tmp_path, monkeypatch, error, status):
    """Before: an exception or Ctrl-C left run_state.json saying "training" for a run that no
    process trains. Now the traceback still shows (an unexpected error is a bug to report), the
    state says what stopped it, and the same command finishes the run."""
    from lrm_tf import main, training

    model_dir = tmp_path / "run"
    argv = ["lrm_tf", *BASE, "--train_steps=4", f"--model_dir={model_dir}", "--noexport"]

    def stop(*args, **kwargs):
        raise error

    with monkeypatch.context() as m:
        m.setattr(training, "train", stop)
        with pytest.raises(type(error)):
            main.run_argv(argv)
    state = json.loads((model_dir / "run_state.json").read_text())
    assert state == {"status": status, "message": f"{type(error).__name__}: {error}"}
    assert main.run_argv(argv) == 0
    assert json.loads((model_dir / "run_state.json").read_text())["status"] == "finished"
