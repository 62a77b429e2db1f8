"""Learning-rate schedules of the papers: linear warm-up then piecewise-constant decay."""

from __future__ import annotations

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="lrm_tf")
class WarmupPiecewise(keras.optimizers.schedules.LearningRateSchedule):
    """Linear warm-up from 0 to values[0] over `warmup_steps`, then values[i] between boundaries.

    LRM sec. 5.1: 5 warm-up epochs to 0.1, x0.1 at epochs 100 and 150. SVHN's schedule
    (0.001 for 5 epochs, 0.01 to 80, 0.001 after) is boundaries [5, 80] without warm-up.
    Boundaries and warm-up are in optimizer steps; callers convert epochs with steps_per_epoch.
    """

    def __init__(self, boundaries, values, warmup_steps=0):
        if len(values) != len(boundaries) + 1:
            raise ValueError(f"need one more value than boundaries, got {values} and {boundaries}")
        self.boundaries = [int(b) for b in boundaries]
        self.values = [float(v) for v in values]
        self.warmup_steps = int(warmup_steps)

    def __call__(self, step):
        step = tf.cast(step, tf.float32)
        lr = tf.constant(self.values[0], tf.float32)
        for b, v in zip(self.boundaries, self.values[1:]):
            lr = tf.where(step >= b, tf.constant(v, tf.float32), lr)
        if self.warmup_steps:
            # (step + 1) so the first update already moves: step 0 of a 0-lr warm-up is wasted work.
            ramp = self.values[0] * tf.minimum(1.0, (step + 1.0) / self.warmup_steps)
            lr = tf.where(step < self.warmup_steps, ramp, lr)
        return lr

    def get_config(self):
        return {"boundaries": self.boundaries, "values": self.values, "warmup_steps": self.warmup_steps}


def make_schedule(values, boundaries=(), warmup=0, unit="epochs", steps_per_epoch=1):
    """A WarmupPiecewise from epoch- or step-counted boundaries and warm-up.

    Args:
      values: learning rates, one more than `boundaries`.
      boundaries: where the rate changes, in `unit`.
      warmup: linear warm-up length to values[0], in `unit`.
      unit: 'epochs' or 'steps'.
      steps_per_epoch: converts epochs into optimizer steps (rounded).

    Returns:
      WarmupPiecewise over optimizer steps.

    Raises:
      ValueError: an unknown unit, or len(values) != len(boundaries) + 1.
    """
    if unit not in ("epochs", "steps"):
        raise ValueError(f"schedule unit must be 'epochs' or 'steps', got {unit!r}")
    scale = steps_per_epoch if unit == "epochs" else 1
    return WarmupPiecewise([round(b * scale) for b in boundaries], list(values), round(warmup * scale))
