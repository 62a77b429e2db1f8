"""Faults in long runs: divergence, SIGKILL mid-epoch, and --deterministic reproducibility."""

import csv
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tensorflow as tf
from run_utils import REPO, run_main

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


def test_sigkill_mid_epoch_then_resume_matches_uninterrupted(uninterrupted, tmp_path):
    model_dir = str(tmp_path / "run")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lrm_tf.main", *DETERMINISTIC, f"--model_dir={model_dir}"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # Epochs are 44 steps; checkpoints every 7 steps. Kill once the checkpoint state names a
    # mid-epoch-2 step (49 ... 84), i.e. after the save has completed, not merely begun.
    state = os.path.join(model_dir, "checkpoints", "checkpoint")

    def latest_step():
        try:
            with open(state) as f:
                return int(f.readline().split('"')[1].rsplit("-", 1)[1])
        except (OSError, IndexError, ValueError):
            return -1

    deadline = time.time() + 300
    while not 49 <= latest_step() < 88 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    step = int(latest.rsplit("-", 1)[1])
    assert step % 44 != 0, f"killed at an epoch boundary ({step}); the test needs mid-epoch"
    out = run_main(*DETERMINISTIC, f"--model_dir={model_dir}")
    assert f"at step {step} " in out.stdout
    a, b = _weights(uninterrupted), _weights(model_dir)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert _metrics(uninterrupted) == _metrics(model_dir)
    assert _results(uninterrupted) == _results(model_dir)


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
