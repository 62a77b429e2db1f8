"""Training progress through the reporter (lrm_tf/training/fit_progress.py, issue 15 scope 1):
in a file plain lines, a line per tenth of an epoch long enough (a fake clock: no timing), one
summary line per epoch; on a terminal one updating line; --verbose 0 silent, 2 the summaries."""

import functools
import io
import re

import keras
import numpy as np
from run_utils import run_main_to_file

from lrm_tf import data, models, training
from lrm_tf.config import Objective
from lrm_tf.report.rundir import RunDir
from lrm_tf.training import fit_progress, trainer

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # anything but \t and \n, ESC included
SUMMARY = r"^epoch {}/{}: 100% {steps}/{steps} steps, \d+ms/step, loss [-\d.e]+, accuracy [\d.]+.* \[\d+s\]$"


class Clock:
    """Half a second more at every reading: about one reading a batch, a 0.5 s step."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        self.now += 0.5
        return self.now


def _fit(progress, epochs=1, steps=20):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3)])
    model.compile("sgd", keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    x, y = np.random.rand(8 * steps, 4).astype("float32"), np.arange(8 * steps) % 3
    model.fit(x, y, batch_size=8, epochs=epochs, callbacks=[progress], verbose=0)


def test_a_redirected_training_log_has_a_line_per_tenth_of_a_long_epoch(tmp_path, monkeypatch):
    """The trainer's own callback (verbose -1), writing to a file, 22 steps of 0.5 s."""
    log = tmp_path / "train.log"
    with open(log, "w") as stream:
        made = functools.partial(fit_progress.FitProgress, stream=stream, clock=Clock(), timer=False)
        monkeypatch.setattr(trainer, "FitProgress", made)
        cfg = training.TrainConfig(batch_size=64, train_epochs=1, lr_values=(0.05,), lr_boundaries=())
        build = lambda: models.build_model("mnist_cnn", (8, 8, 1), 10, seed=0)
        training.train(build, Objective(), data.load_arrays("digits"), RunDir(str(tmp_path / "run")), cfg)
    text = log.read_text()
    assert not CONTROL.search(text), text
    lines = text.splitlines()
    line_re = (
        r"^epoch 1/1: +(\d+)% step (\d+)/22, loss [\d.]+, accuracy [\d.]+, ce_clean [\d.]+, weight_decay "
    )
    steps = [re.match(line_re, line) for line in lines[:-1]]
    assert all(steps), lines
    assert {int(m[1]) // 10 for m in steps} == set(range(1, 10)), lines  # every tenth
    assert all("elapsed, ~" in line and " left]" in line for line in lines[:-1]), lines
    assert re.match(SUMMARY.format(1, 1, steps=22), lines[-1]) and "lr 0.0500" in lines[-1], lines


def test_verbose_2_writes_the_summary_line_only_and_a_short_epoch_nothing_else():
    stream = io.StringIO()
    _fit(fit_progress.FitProgress(20, 40, batches=False, stream=stream, clock=Clock(), timer=False), epochs=2)
    lines = stream.getvalue().splitlines()
    assert len(lines) == 2 and all(re.match(SUMMARY.format(i, 2, steps=20), s) for i, s in zip((1, 2), lines))
    stream = io.StringIO()  # verbose 1, real clock: 20 quick steps are a short epoch, one line
    _fit(fit_progress.FitProgress(20, 20, stream=stream, terminal=False, timer=False), epochs=1)
    assert len(stream.getvalue().splitlines()) == 1


def test_terminal_gets_one_updating_line_per_epoch():
    stream = io.StringIO()
    _fit(fit_progress.FitProgress(20, 40, stream=stream, terminal=True, clock=Clock(), timer=False), epochs=2)
    text = stream.getvalue()
    assert text.count("\n") == 2 and text.count("\r") > 4 and "step 10/20, loss" in text
    assert re.search(r"\repoch 2/2: 100% 20/20 steps, \d+ms/step, loss", text)


def test_metrics_note_orders_loss_and_accuracy_first():
    note = fit_progress.metrics_note({"ce": 1.5, "accuracy": 0.25, "loss": 2.0, "tiny": 1e-6, "name": "x"})
    assert note == "loss 2.0000, accuracy 0.2500, ce 1.5000, tiny 1.000e-06"


def test_the_command_line_redirected_to_a_file_writes_plain_epoch_lines(tmp_path):
    log = tmp_path / "train.log"
    args = ["--dataset=digits", "--model=mnist_cnn", "--train_epochs=2", "--batch_size=64"]
    args += ["--lr_values=0.02", "--lr_boundaries=", f"--model_dir={tmp_path / 'run'}", "--noexport"]
    args += ["--eval_attacks=clean"]
    returncode, text = run_main_to_file(log, *args)
    assert returncode == 0, text[-3000:].decode(errors="replace")
    assert not re.search(rb"[\x1b\r\x08]", text), "control characters in the log"
    for epoch in (1, 2):
        assert re.search(SUMMARY.format(epoch, 2, steps=22).encode(), text, re.M), text[-3000:]
