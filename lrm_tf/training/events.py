"""Training's TensorBoard logs (`lrm_tf.report.tensorboard`): the run's settings once, then
each epoch's row of metrics.csv at step = its epoch (1..N), appended to one event file."""

from __future__ import annotations

import csv
import dataclasses
import os

import keras

from lrm_tf.report import index, tensorboard
from lrm_tf.report.rundir import RunDir

_NOT_SCALARS = ("epoch", "step")  # the step itself and the optimizer's counter


class EpochEvents(keras.callbacks.Callback):
    """Writes `<run>/tensorboard/train` from metrics.csv; place it after the callback that
    writes metrics.csv, so that both hold the same numbers.

    Args:
      run: the run directory (its flags.json gives the HParams; metrics.csv the scalars).
      settings: the HParams when the run has no flags.json (a library call), e.g. the
        TrainConfig.
    """

    def __init__(self, run: RunDir, settings=None):
        super().__init__()
        self.run = run
        self.settings = settings

    def on_train_begin(self, logs=None):
        settings = tensorboard.run_settings(self.run.path)
        if settings is None and dataclasses.is_dataclass(self.settings):
            settings = dataclasses.asdict(self.settings)
        if tensorboard.write_hparams(self.run.tensorboard, settings or {}) is not None:
            index.write_index(self.run.path)  # a new run: its README names the TensorBoard command

    def on_epoch_end(self, epoch, logs=None):
        if not os.path.isfile(self.run.metrics_csv):
            return
        with open(self.run.metrics_csv, newline="") as f:
            rows = list(csv.DictReader(f))
        if not rows or rows[-1].get("epoch") != str(epoch + 1):
            return
        values = {}
        for name, text in rows[-1].items():
            try:
                values[name] = float(text)
            except (TypeError, ValueError):
                continue
        for name in _NOT_SCALARS:
            values.pop(name, None)
        tensorboard.write_scalars(os.path.join(self.run.tensorboard, tensorboard.TRAIN), epoch + 1, values)
