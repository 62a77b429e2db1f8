import csv
import os
import signal

import numpy as np
import pytest
import tensorflow as tf
from run_utils import run_main

from lrm_tf import data, killpoints, models, training
from lrm_tf.config import Objective
from lrm_tf.training.schedules import make_schedule


def test_logged_loss_equals_hand_computation():
    """fit's logged loss/ce/weight_decay are epoch means of what was optimised (lr 0: fixed weights)."""
    a = data.load_arrays("digits")
    x = a.x_train[:64].astype("float32") / 255.0
    y = a.y_train[:64]
    net = models.build_model("mnist_cnn", (8, 8, 1), 10, seed=3)
    cfg = training.TrainConfig(batch_size=32, lr_values=(0.0,), lr_boundaries=(), weight_decay=1e-3)
    trainer = training.build_trainer(net, Objective(), 10, cfg, steps_per_epoch=2)
    history = trainer.fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(32), epochs=1, verbose=0)
    logits = net(x, training=False).numpy()  # no batch norm, no dropout: train == inference
    logits = logits - logits.max(axis=1, keepdims=True)
    ce = -(logits[np.arange(64), y] - np.log(np.exp(logits).sum(axis=1))).mean()
    wd = 1e-3 * sum((np.asarray(k) ** 2).sum() / 2 for k in models.decayed_kernels(net))
    logs = {k: v[-1] for k, v in history.history.items()}
    assert logs["ce_clean"] == pytest.approx(ce, rel=1e-4)
    assert logs["weight_decay"] == pytest.approx(wd, rel=1e-4)
    assert logs["loss"] == pytest.approx(ce + wd, rel=1e-4)
    assert logs["loss"] > 0


def test_schedule_warmup_and_piecewise():
    s = make_schedule([0.1, 0.01, 0.001], [100, 150], warmup=5, unit="epochs", steps_per_epoch=10)
    lr = lambda step: float(s(step))
    assert lr(0) == pytest.approx(0.1 / 50) and lr(24) == pytest.approx(0.05)
    assert lr(49) == pytest.approx(0.1) and lr(999) == pytest.approx(0.1)
    assert lr(1000) == pytest.approx(0.01) and lr(1500) == pytest.approx(0.001)
    svhn = make_schedule([0.001, 0.01, 0.001], [5, 80], steps_per_epoch=2)
    assert [float(svhn(t)) for t in (9, 10, 159, 160)] == pytest.approx([0.001, 0.01, 0.01, 0.001])


def test_train_function_resumes_from_checkpoint(tmp_path):
    from lrm_tf.report.rundir import RunDir

    a = data.load_arrays("digits")
    cfg = training.TrainConfig(batch_size=64, train_epochs=1, lr_values=(0.05,), lr_boundaries=(), verbose=0)
    run = RunDir(str(tmp_path / "run"))
    build = lambda: models.build_model("mnist_cnn", (8, 8, 1), 10, seed=0)
    training.train(build, Objective(), a, run, cfg)
    cfg = cfg.replace(train_epochs=2)
    messages = []
    training.train(build, Objective(), a, run, cfg, log=messages.append)
    assert messages and "resuming" in messages[0] and "step 22 " in messages[0]
    with open(run.metrics_csv) as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2"] and rows[-1]["step"] == "44"


def test_killed_run_resumes_with_same_command(tmp_path):
    """Killed between epoch 2's metrics row and its checkpoint (a kill point, no timing: issue
    16); the same command continues from epoch 1's checkpoint and logs each epoch once."""
    model_dir = str(tmp_path / "run")
    args = [
        "--dataset=digits",
        "--model=mnist_cnn",
        "--train_epochs=3",
        "--batch_size=32",
        "--lr_values=0.02",
        "--lr_boundaries=",
        f"--model_dir={model_dir}",
        "--verbose=2",
        "--noexport",
    ]
    killed = run_main(*args, check=False, env={killpoints.ENV: "checkpoint_sidecar:2"})
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    with open(os.path.join(model_dir, "metrics.csv")) as f:
        assert [r["epoch"] for r in csv.DictReader(f)] == ["1"]
    out = run_main(*args)
    assert "resuming from" in out.stdout and "at step 44 of 132" in out.stdout
    with open(os.path.join(model_dir, "metrics.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["1", "2", "3"] and rows[-1]["step"] == "132"
