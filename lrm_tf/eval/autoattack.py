"""AutoAttack's evaluation: the ensemble run stage by stage on the points still robust.

Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks" (arXiv:2003.01690), section 4 and the reference code's
`run_standard_evaluation`: a clean pass marks the misclassified points as broken; each attack
of the ensemble (`lrm_tf.attacks.ensemble.ENSEMBLES`) then runs from the clean input on the
points still robust only, in batches of those points; a point broken by any attack counts as
broken, and the robust accuracy is reported after each stage. The reference's checks
(`checks.py`) become warnings of the result: a randomised model, softmax outputs, zero DLR
gradients at the start, Square beating the white-box attacks, more targets than classes - 1.

Every stage goes through `lrm_tf.eval.batching.map_batches`, and the attacks key their randomness per
example, so the result depends neither on the batch size nor on the replica count.
"""

from __future__ import annotations

import dataclasses
import time

import numpy as np
import tensorflow as tf

from lrm_tf.attacks import _common, ensemble
from lrm_tf.attacks.adapters import as_logits_fn
from lrm_tf.attacks.apgd import dlr_loss
from lrm_tf.attacks.spec import AttackSpec
from lrm_tf.config import Threat
from lrm_tf.eval.batching import Outcome, map_batches
from lrm_tf.eval.cost import CHECKS, attack_cost
from lrm_tf.report import progress as progress_lines

RANDOM_PASSES = 5  # forward passes compared by the randomness check (the reference's 5)
SOFTMAX_TOLERANCE = 1e-5  # |sum - 1| of outputs that count as probabilities
ZERO_GRADIENT = 1e-20  # a DLR gradient whose largest entry is below this counts as zero
SQUARE_MARGIN = 0.002  # Square beating the white-box stages by more than 0.2 points


def _check_values(logits_fn, classes: int):
    """(x, y, seed) -> [b, 4] float: clean-correct, outputs differ over RANDOM_PASSES passes,
    outputs look like probabilities, largest |DLR gradient| (-1 when K < 3)."""

    def fn(x, y, seed):
        with tf.GradientTape() as tape:
            tape.watch(x)
            logits = tf.cast(logits_fn(x), tf.float32)
            loss = dlr_loss(y, logits) if classes >= 3 else tf.zeros(tf.shape(x)[:1])
            total = tf.reduce_sum(loss)  # a sum of per-example terms: per-example gradients
        if classes >= 3:
            grad = tape.gradient(total, x, unconnected_gradients=tf.UnconnectedGradients.ZERO)
            peak = tf.reduce_max(tf.abs(tf.reshape(grad, [tf.shape(x)[0], -1])), axis=1)
        else:
            peak = -tf.ones_like(loss)
        differs = tf.zeros_like(loss, tf.bool)
        for _ in range(RANDOM_PASSES - 1):
            again = tf.cast(logits_fn(x), tf.float32)
            differs |= tf.reduce_any(again != logits, axis=1)
        in_range = tf.reduce_all((logits >= 0.0) & (logits <= 1.0), axis=1)
        sums_to_one = tf.abs(tf.reduce_sum(logits, axis=1) - 1.0) < SOFTMAX_TOLERANCE
        correct = _common.predicted_labels(logits) == y
        flags = [correct, differs, in_range & sums_to_one]
        return tf.stack([tf.cast(f, tf.float32) for f in flags] + [peak], axis=1)

    return fn


def _stage_values(attack_fn, logits_fn, norm: str, keep_adversarial: bool):
    """(x, y, seed) -> {'correct' int32 [b], 'norm' [b], 'nan' int32 [b], 'x_adv'?}."""

    def fn(x, y, seed):
        adv = attack_fn(x, y, seed)
        correct = _common.predicted_labels(logits_fn(adv)) == y
        delta = tf.reshape(adv - x, [tf.shape(x)[0], -1])
        size = tf.reduce_max(tf.abs(delta), 1) if norm != "l2" else tf.norm(delta, axis=1)
        nan = tf.reduce_any(tf.math.is_nan(tf.reshape(adv, [tf.shape(x)[0], -1])), axis=1)
        out = {"correct": tf.cast(correct, tf.int32), "norm": size, "nan": tf.cast(nan, tf.int32)}
        if keep_adversarial:
            out["x_adv"] = adv
        return out

    return fn


def check_warnings(checks: np.ndarray, classes: int, spec: AttackSpec) -> list[str]:
    """AutoAttack's checks before the attacks (the reference's `checks.py`) as warnings.

    Args:
      checks: float [N, 4] from the check pass: clean-correct, outputs differ, outputs are
        probabilities, largest |DLR gradient| (-1: not computed). The zero-gradient check counts
        clean-correct points only (the reference counts every point).
      classes: K, the number of classes.
      spec: the ensemble's spec.

    Returns:
      One sentence per failed check.
    """
    warnings = []
    stages = ensemble.stages(spec)
    random_version = any(dict(s.options).get("eot_iter") for s in stages)
    if checks[:, 1].any() and not random_version:
        warnings.append(
            f"the model is randomised ({RANDOM_PASSES} forward passes differ on "
            f"{int(checks[:, 1].sum())} points): its accuracy under a deterministic attack is "
            "not reliable; use autoattack_rand (EOT)"
        )
    if len(checks) and checks[:, 2].all():
        warnings.append(
            "the model's outputs look like probabilities (in [0, 1], summing to 1), not logits: "
            "the attacks' losses expect logits; evaluate the model without its softmax"
        )
    if classes < 3:
        warnings.append(f"the DLR loss needs at least 3 classes; the model has {classes}")
    else:
        # Only the clean-correct points are attacked. On a misclassified point whose label is
        # the third logit DLR is constant by construction; the reference counts those too,
        # which raised false alarms on weak undefended models (161 of 1,000 CIFAR-10 points).
        correct = checks[:, 0] > 0.5
        zero = int(np.sum(correct & (checks[:, 3] >= 0) & (checks[:, 3] < ZERO_GRADIENT)))
        if zero:
            warnings.append(
                f"{zero} of the {int(correct.sum())} clean-correct points have a zero DLR gradient "
                "at the clean input: gradient-based attacks may be unreliable there (masked gradients)"
            )
    for stage in stages:
        if stage.targets > classes - 1:
            warnings.append(
                f"{stage.attack} uses {stage.targets} target classes, more than classes - 1 = {classes - 1}"
            )
    return warnings


def run_ensemble(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    spec: AttackSpec,
    threat: Threat,
    batch_size: int = 500,
    seed: int = 0,
    strategy: tf.distribute.Strategy | None = None,
    options=None,
    keep_adversarial: bool = False,
    progress: bool | progress_lines.Report = True,
    log=print,
) -> Outcome:
    """Runs an ensemble (`autoattack`, `autoattack_rand`) as AutoAttack does.

    Args:
      model: what `lrm_tf.attacks.build_attack` accepts (Keras model, SavedModel, callable
        images -> logits).
      images: float32 [N, H, W, C] in [0, 1]; labels: int [N].
      spec: an ensemble's AttackSpec (`ensemble.stages(spec)` is not None).
      threat: eps and norm range; every stage runs with one restart.
      batch_size, seed, strategy: as for `evaluation.attack_accuracy`; each stage's batches
        hold only the points still robust.
      options: a family's options object, passed to the stages of that family.
      keep_adversarial: return the adversarial examples (clean x where no stage succeeded).
      progress: True: a progress line (`lrm_tf.report.progress.Task`) for the checks and one
        per stage, with the running robust accuracy; False: none; a report(fraction, note):
        the checks and the stages as parts of it, weighted by their estimated cost.
      log: where the stage lines go.

    Returns:
      An `Outcome`: per-example correctness bool [N] (robust to every stage), x_adv float32
      [N, H, W, C] or None, and details {'stages': [{'attack', 'robust_accuracy',
      'attacked', 'broken', 'seconds'}] (the first is 'clean'), 'warnings', 'clean_accuracy',
      'max_perturbation', 'nan_points'}.

    Raises:
      ValueError: a stage's attack is not registered, or lacks an option the ensemble sets.
    """
    strategy = strategy or tf.distribute.get_strategy()
    logits_fn = as_logits_fn(model)
    n = len(labels)
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels, np.int64)
    stage_attacks = ensemble.stage_attacks(spec, logits_fn, threat, options)
    classes = int(logits_fn(tf.constant(images[:1])).shape[-1]) if n else 0
    costs = [CHECKS] + [
        attack_cost(fn.spec, ensemble.stage_threat(threat), ensemble.stage_options(stage, fn.spec, options))
        for stage, fn in stage_attacks
    ]
    shares = _Shares(progress, costs)
    t0 = time.time()
    check_fn = _check_values(logits_fn, classes)
    with shares.stage(f"{spec.name} checks", n) as tell:
        checks = _gather(
            _reported(map_batches(check_fn, images, labels, batch_size, seed, strategy), tell, n), [0, 4]
        )
    robust = checks[:, 0] > 0.5
    warnings = check_warnings(checks, classes, spec) if n else []
    state = _State(robust, images.copy() if keep_adversarial else None, np.zeros([n]), np.zeros([n], bool))
    report = [_stage_record("clean", robust, n, n, time.time() - t0)]
    log(f"{spec.name}: clean accuracy {100 * report[0]['robust_accuracy']:.2f}%")
    for number, (_, attack_fn) in enumerate(stage_attacks, 1):
        t0 = time.time()
        index = np.flatnonzero(state.robust)
        name = attack_fn.spec.name
        log(f"{spec.name} stage {number}/{len(stage_attacks)}: {name} on {len(index)} robust points")
        fn = _stage_values(attack_fn, logits_fn, spec.norm, keep_adversarial)
        label = f"{spec.name} {number}/{len(stage_attacks)} {name}"
        with shares.stage(label, len(index)) as tell:
            batches = map_batches(fn, images[index], labels[index], batch_size, seed, strategy)
            for start, done, values in _spans(batches):
                state.update(index[start:done], values)
                robust = 100 * state.robust.sum() / n
                tell(done / len(index), f"{done}/{len(index)} points, robust accuracy {robust:.2f}%")
        report.append(_stage_record(name, state.robust, n, len(index), time.time() - t0))
        log(f"  robust accuracy after {name}: {100 * report[-1]['robust_accuracy']:.2f}%")
    warnings += _square_warnings(report, [s for s, _ in stage_attacks])
    for w in warnings:
        log(f"WARNING ({spec.name}): {w}")
    details = {
        "stages": report,
        "warnings": warnings,
        "clean_accuracy": report[0]["robust_accuracy"],
        "max_perturbation": float(state.size.max()) if n else 0.0,
        "nan_points": int(state.nan.sum()),
    }
    return Outcome(correct=state.robust, x_adv=state.x_adv, details=details)


@dataclasses.dataclass
class _State:
    """Per point: still robust, the adversarial example kept, its perturbation size, NaN seen."""

    robust: np.ndarray
    x_adv: np.ndarray | None
    size: np.ndarray
    nan: np.ndarray

    def update(self, rows: np.ndarray, values: dict) -> None:
        """Marks the points `rows` (indices into the test set) a stage broke as broken."""
        broken = values["correct"] == 0
        self.robust[rows[broken]] = False
        self.size[rows[broken]] = values["norm"][broken]
        self.nan[rows] |= values["nan"] > 0
        if self.x_adv is not None:
            self.x_adv[rows[broken]] = values["x_adv"][broken]


class _Shares:
    """The report of each part of an ensemble run (the checks, then each stage).

    progress True: a `Task` per part; a report: the parts share it in proportion to their
    cost per point times their points, the stages still to come counted on the points of the
    current one (at most that many remain robust); False: nothing.
    """

    def __init__(self, progress, costs: list[float]):
        self.progress, self.costs = progress, costs
        self.part, self.start = 0, 0.0

    def stage(self, label: str, points: int):
        """A context giving the report of the next part, run on `points` points."""
        number, self.part = self.part, self.part + 1
        if self.progress is True:
            return progress_lines.Task(label) if points else progress_lines.reporting(label, False)
        if not self.progress:
            return progress_lines.reporting(label, False)
        later = sum(self.costs[number:]) * max(points, 1)
        end = self.start + (1.0 - self.start) * self.costs[number] * max(points, 1) / later
        report = progress_lines.part(self.progress, self.start, end, f"{label}: ")
        self.start = end
        return progress_lines.reporting(label, report)


def _reported(batches, tell, n: int):
    """The batches of `map_batches`, reporting each to `tell`."""
    for done, values in batches:
        tell(done / n, f"{done}/{n} points")
        yield done, values


def _spans(batches):
    """(start, end, values) of each batch that `map_batches` yields."""
    start = 0
    for end, values in batches:
        yield start, end, values
        start = end


def _gather(batches, empty_shape) -> np.ndarray:
    parts = [values for _, values in batches]
    return np.concatenate(parts) if parts else np.zeros(empty_shape, np.float32)


def _stage_record(name, robust, n, attacked, seconds) -> dict:
    """A stage's record; 'broken': the points attacked that are no longer robust."""
    return {
        "attack": name,
        "robust_accuracy": float(robust.sum() / max(n, 1)),
        "attacked": int(attacked),
        "broken": int(attacked - robust.sum()),
        "seconds": round(seconds, 2),
    }


def _square_warnings(report: list[dict], stages: list) -> list[str]:
    """The reference's `check_square_sr`: a black-box stage lowering the robust accuracy by
    more than 0.2 points below the white-box stages before it means masked gradients."""
    warnings = []
    for i, stage in enumerate(stages, 1):
        if not stage.black_box or i < 2:
            continue
        drop = report[i - 1]["robust_accuracy"] - report[i]["robust_accuracy"]
        if drop > SQUARE_MARGIN:
            warnings.append(
                f"{report[i]['attack']} (black-box) broke {report[i]['broken']} points the white-box "
                f"attacks did not ({100 * drop:.2f} points of accuracy): a sign of gradient "
                "masking; do not trust gradient-based evaluations of this model"
            )
    return warnings
