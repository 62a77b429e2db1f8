"""Whether a training run learned: each step's training accuracy and loss as the metric trackers
log them (`StepLog`), and the judgement at the end of `lrm_tf.training.train` (`judge`), which
raises `NotLearningError` for a run that ends at chance accuracy, or whose loss is mostly weight
decay and not falling, so that nothing is evaluated or exported as a result.

Judged only where a judgement means something (BUILD_NOTES.md, "Runs that do not learn"): real
data (not `synthetic_arrays`), `TrainConfig.stop_if_not_learning`, one worker, and at least
`MIN_STEPS` steps trained in this process and after the learning-rate warm-up.
"""

from __future__ import annotations

import math
import re

import keras
import numpy as np
import tensorflow as tf

MIN_STEPS = 200  # steps (in this process, and after warm-up) before a run is judged
WINDOW = 4  # the first and the last 1/WINDOW of the steps are compared
MARGIN = 0.01  # accuracy up to chance + MARGIN + 3 standard errors is "at chance"


class NotLearningError(RuntimeError):
    """Training ended without learning; the checkpoints stay, nothing else is written.

    Attributes:
      reason: one line; settings are named `{name}` (`render("--")` writes them as flags).
      stats: what was measured (JSON-able): accuracy, chance, loss, weight_decay, steps.
    """

    def __init__(self, reason: str, stats: dict):
        self.reason, self.stats = reason, stats
        super().__init__(self.render(""))

    def render(self, prefix: str = "") -> str:
        return re.sub(r"\{([a-z0-9_]+)\}", lambda m: prefix + m.group(1), self.reason)


class StepLog(keras.callbacks.Callback):
    """Each training step's accuracy, mean loss and mean weight decay.

    Differenced from the running totals of the model's metric trackers (`accuracy_tracker`,
    `term_trackers['loss']` and `['weight_decay']` of `RobustTrainer`, whose epoch means `fit`
    logs), so a resumed epoch's restored totals are not counted again.
    `rows`: one (correct, examples, loss, weight_decay) per step of this process.
    """

    def __init__(self):
        super().__init__()
        self.rows: list[tuple[float, float, float, float]] = []
        self._last = None
        self._read = None

    def _totals(self) -> np.ndarray:
        if self._read is None:  # one graph call per step reads the six totals
            trackers = self.model.term_trackers
            chosen = (self.model.accuracy_tracker, trackers["loss"], trackers.get("weight_decay"))
            pairs = [(t.total, t.count) for t in chosen if t is not None]
            self._read = tf.function(
                lambda: tf.stack([tf.cast(tf.convert_to_tensor(v), tf.float64) for p in pairs for v in p])
            )
        values = self._read().numpy()
        return values if len(values) == 6 else np.concatenate([values, [0.0, 0.0]])

    def on_epoch_begin(self, epoch, logs=None):
        self._last = self._totals()  # after Keras' reset and a resumed epoch's restore

    def on_train_batch_end(self, batch, logs=None):
        now = self._totals()
        d, self._last = now - self._last, now
        self.rows.append((d[0], d[1], d[2] / max(d[3], 1.0), d[4] / d[5] if d[5] else 0.0))


def judge(rows, labels: np.ndarray, cfg, adversarial: bool, warmup_steps: int, final_step: int) -> None:
    """Raises NotLearningError if the run ended at chance or on a weight-decay-dominated loss.

    Chance is the accuracy of always answering the commonest training label. The last quarter
    of the steps is "at chance" when its accuracy is at most chance + 0.01 + 3 standard errors
    (not judged for adversarial training, whose logged accuracy is on adversarial examples and
    legitimately starts at or below chance). The loss is "dominated by weight decay and not
    falling" when, over the last quarter, weight decay is at least half of it, it is no lower
    (by 1%) than over the first quarter, and the rest of it is no lower than chance's
    cross-entropy (the entropy of the labels), so a long run that fits its data is never
    stopped for a large weight-decay share.

    Args:
      rows: `StepLog.rows`.
      labels: the training labels used (int, [N]).
      cfg: the TrainConfig (named in the message: learning rate, weight decay).
      adversarial: whether the logged accuracy is on adversarial examples.
      warmup_steps: the learning-rate warm-up in steps.
      final_step: the optimizer's step at the end.

    Raises:
      NotLearningError: one line saying what was measured and what to change.
    """
    n = len(rows)
    if n < MIN_STEPS or final_step < warmup_steps + MIN_STEPS:
        return
    k = max(n // WINDOW, 1)
    head, tail = np.asarray(rows[:k]), np.asarray(rows[-k:])
    counts = np.bincount(np.asarray(labels, np.int64))
    p = counts[counts > 0] / counts.sum()
    chance, entropy = float(p.max()), float(-(p * np.log(p)).sum())
    examples = float(tail[:, 1].sum())
    accuracy = float(tail[:, 0].sum()) / max(examples, 1.0)
    loss, wd, first_loss = float(tail[:, 2].mean()), float(tail[:, 3].mean()), float(head[:, 2].mean())
    margin = MARGIN + 3 * math.sqrt(chance * (1 - chance) / max(examples, 1.0))
    at_chance = not adversarial and accuracy <= chance + margin
    decayed = wd >= 0.5 * loss and loss >= 0.99 * first_loss and loss - wd >= entropy
    if not (at_chance or decayed):
        return
    found = []
    if at_chance:
        found.append(
            f"training accuracy {accuracy:.1%} over the last {k} of {n} steps is at chance "
            f"({chance:.1%}, always answering the commonest class)"
        )
    if decayed:
        found.append(
            f"weight decay is {wd / loss:.0%} of the loss {loss:.3g}, which is not falling "
            f"({first_loss:.3g} over the first {k} steps)"
        )
    lr = ",".join(format(v, "g") for v in cfg.lr_values)
    fix = f"Lower {{lr_values}} (now {lr}, {{optimizer}}={cfg.optimizer})"
    if cfg.weight_decay:
        fix += f" or {{weight_decay}} (now {cfg.weight_decay:g})"
    stats = {
        "accuracy": round(accuracy, 4),
        "chance": round(chance, 4),
        "loss": round(loss, 4),
        "weight_decay": round(wd, 4),
        "first_loss": round(first_loss, 4),
        "steps_judged": k,
        "steps": n,
        "step": final_step,
    }
    raise NotLearningError(
        f"the run did not learn: {'; '.join(found)}; nothing was evaluated or exported. {fix}; "
        "{stop_if_not_learning}=false trains on regardless",
        stats,
    )


def applies(cfg, arrays, multi_worker: bool) -> bool:
    """Whether a run is judged at all: `cfg.stop_if_not_learning`, real data, one worker (the
    workers' trackers hold their own shards; one worker stopping alone would leave the others
    waiting in a collective)."""
    return bool(cfg.stop_if_not_learning) and not getattr(arrays, "synthetic", False) and not multi_worker


def warmup_steps(cfg, steps_per_epoch: int) -> int:
    """The warm-up of `cfg` in optimizer steps (as `schedules.make_schedule` rounds it)."""
    return round(cfg.lr_warmup * (steps_per_epoch if cfg.schedule_unit == "epochs" else 1))
