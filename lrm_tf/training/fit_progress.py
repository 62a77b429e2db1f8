"""Training progress through `lrm_tf.report.progress` (issue 15, scope 1), in place of fit's own
output: Keras' bar wrote ESC, carriage returns and backspaces into log files, and its one line
per epoch left a log silent for the whole epoch.

`FitProgress` reports each epoch as a `Task` labelled 'epoch 3/15': per batch the step in the
epoch and the logged metrics (the epoch means so far of the loss, the accuracy and each
objective term: the trainer's metric trackers), with the elapsed time and an estimate of what
is left - one updating line on a terminal; in a file or pipe a line per tenth of an epoch (for
an epoch projected to last `progress.SHORT` seconds or more) and a heartbeat every
`progress.FILE_HEARTBEAT` seconds. Each epoch ends with one plain summary line ('epoch 3/15:
100% 390/390 steps, 152ms/step, loss 1.0312, accuracy 0.6410, ..., lr 0.1000 [59s]'), which is
all that `batches=False` (--verbose=2) writes.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import keras

from lrm_tf.report import progress

FIRST = ("loss", "accuracy")  # shown first; the other logged values follow in the logs' order


def value(number: float) -> str:
    """A logged value as fit shows it: 4 decimals, or 3 significant digits in e-notation."""
    if number == 0 or 1e-3 <= abs(number) < 1e5 or not math.isfinite(number):
        return f"{number:.4f}"
    return f"{number:.3e}"


def metrics_note(logs: dict | None) -> str:
    """'loss 1.0312, accuracy 0.6410, ce 1.0105, ...' of the numeric values of `logs`."""
    logs = logs or {}
    names = [n for n in FIRST if n in logs] + [n for n in logs if n not in FIRST]
    parts = []
    for name in names:
        try:
            parts.append(f"{name} {value(float(logs[name]))}")
        except (TypeError, ValueError):  # not a number
            continue
    return ", ".join(parts)


class FitProgress(keras.callbacks.Callback):
    """Reports each epoch of `fit` as a `progress.Task` (see the module docstring).

    The trainer fits one epoch per `fit` call (epochs=n_epochs, initial_epoch=epoch) and may
    resume mid-epoch: the steps already done in the epoch are read from the optimizer's step
    counter when the epoch begins; the note counts the epoch's steps, the percentage and the
    estimate what this process runs of it.

    Args:
      steps_per_epoch: steps of a whole epoch.
      total_steps: the run's last step (the last epoch may be shorter).
      batches: report every batch (--verbose=1); False: the epoch's summary line only.
      stream: where lines go (default: `sys.stdout` when an epoch begins).
      terminal, clock, timer: passed to `progress.Task` (tests pass a fake clock, no timer).
    """

    def __init__(
        self,
        steps_per_epoch: int,
        total_steps: int,
        *,
        batches: bool = True,
        stream=None,
        terminal: bool | None = None,
        clock: Callable[[], float] = time.monotonic,
        timer: bool = True,
    ):
        super().__init__()
        self.steps_per_epoch, self.total_steps, self.batches = steps_per_epoch, total_steps, batches
        self.stream, self.terminal, self.clock, self.timer = stream, terminal, clock, timer
        self.task: progress.Task | None = None
        self._done = self._steps = self._run = 0  # steps done before this fit, in the epoch, run now
        self._start = 0.0

    def on_epoch_begin(self, epoch, logs=None):
        self.close(final=False)
        n_epochs = self.params.get("epochs") if self.params else None
        n_epochs = n_epochs or math.ceil(self.total_steps / self.steps_per_epoch)
        step = int(self.model.optimizer.iterations.numpy()) if self.model else 0
        first = epoch * self.steps_per_epoch
        self._steps = max(min(self.steps_per_epoch, self.total_steps - first), 1)
        self._done = min(max(step - first, 0), self._steps)
        self._run, self._start = 0, self.clock()
        label = f"epoch {epoch + 1}/{n_epochs}"
        if self.batches:
            self.task = progress.Task(
                label, self.stream, terminal=self.terminal, clock=self.clock, timer=self.timer
            )
        else:  # the closing line only, plain on a terminal too
            self.task = progress.Task(
                label, self.stream, terminal=False, clock=self.clock, timer=False, short=math.inf
            )

    def on_train_batch_end(self, batch, logs=None):
        self._run = batch + 1
        if self.batches and self.task is not None:
            # The fraction of what this fit runs (the rate and estimate are of this process).
            fraction = self._run / max(self._steps - self._done, 1)
            step = self._done + self._run
            self.task(fraction, f"step {step}/{self._steps}, {metrics_note(logs)}")

    def on_epoch_end(self, epoch, logs=None):
        if self.task is None:
            return
        elapsed = self.clock() - self._start
        rate = f", {1000 * elapsed / self._run:.0f}ms/step" if self._run else ""
        note = f"{self._done + self._run}/{self._steps} steps{rate}"
        metrics = metrics_note(logs)
        self.task.close(note + (f", {metrics}" if metrics else ""))
        self.task = None

    def close(self, final: bool = False) -> None:
        """Ends an epoch's task left open (fit raised): its terminal line ends, a file gets nothing."""
        if self.task is not None:
            self.task.close(final=final)
            self.task = None
