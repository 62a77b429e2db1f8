"""Auto-PGD (APGD): APGD-CE, APGD-DLR and APGD-T, L-inf and L2.

Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks" (arXiv:2003.01690), sec. 3 (Algorithm 1: the step-size schedule with
checkpoints, momentum, restarts from the best point) and sec. 4 (the DLR loss, eq. 6, and its
targeted version, eq. 7). Defaults as the reference code (fra31/auto-attack) and AutoAttack's
'standard' version: 100 iterations, eta_0 = 2 eps, alpha = rho = 0.75, 1 restart, 9 targets.

Names (`lrm_tf.attacks.parse_attack`): `apgd[<iterations>][_l2]_{ce|dlr|t}`; the loss slot is
`ce` (cross-entropy), `dlr` (eq. 6) or `t` (APGD-T: the targeted DLR loss, eq. 7, against the
runner-up classes of the clean logits, one run per target; success is still untargeted).
Without a count the reference's 100: `apgd_ce` = `apgd100_ce`, `apgd_t` = `apgd100_t`.

The loop itself (one run) is `lrm_tf.attacks._apgd_core.run`, a `tf.while_loop`: tracing
APGD-1000 builds the graph of APGD-10. Restarts and targets run in a second `tf.while_loop`,
each on the examples not yet fooled only (gathered, so a later run costs what is left).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from lrm_tf.attacks import _apgd_core, _common
from lrm_tf.attacks._apgd_core import checkpoints  # noqa: F401 (public: the schedule)
from lrm_tf.attacks.adapters import as_logits_fn
from lrm_tf.attacks.losses import xent_loss
from lrm_tf.attacks.restarts import restart_seed
from lrm_tf.attacks.spec import AttackFamily, AttackSpec
from lrm_tf.config import Config, Threat
from lrm_tf.config.setting import at_least, in_range, positive, setting

# Croce & Hein's denominator guard in eqs. 6 and 7.
DLR_EPSILON = 1e-12
LOSSES = ("ce", "dlr", "t")


def _require_classes(logits, minimum: int, what: str) -> tf.Tensor:
    logits = tf.convert_to_tensor(logits)
    classes = logits.shape[-1]
    if classes is not None and classes < minimum:
        raise ValueError(
            f"{what} needs at least {minimum} classes (its denominator uses the "
            f"{'3rd' if minimum == 3 else '3rd and 4th'} largest logit), got {classes}; "
            "use the cross-entropy loss (apgd_ce) instead"
        )
    return logits


def dlr_loss(labels, logits):
    """The Difference of Logits Ratio (Croce & Hein 2020, eq. 6), per example:

        DLR(z, y) = -(z_y - max_{i != y} z_i) / (z_pi1 - z_pi3 + 1e-12),

    pi sorting the logits in decreasing order. Invariant to shifts and positive rescalings
    of the logits; maximised by the untargeted attack (positive once y is not the argmax).
    When y is exactly the third largest logit, DLR = 1 in a neighbourhood and its gradient
    is zero (fra31/auto-attack#108): APGD-DLR cannot move such an example.

    Args:
      labels: int [B]; logits: float [B, K], K >= 3.

    Returns:
      float [B].

    Raises:
      ValueError: K < 3 (the denominator needs a third logit).
    """
    logits = _require_classes(logits, 3, "the DLR loss")
    top = tf.math.top_k(logits, 3).values
    is_label = tf.one_hot(labels, tf.shape(logits)[-1], on_value=True, off_value=False)
    label_logit = tf.gather(logits, tf.cast(labels, tf.int32), batch_dims=1)
    other = tf.reduce_max(tf.where(is_label, logits.dtype.min, logits), axis=-1)
    return -(label_logit - other) / (top[:, 0] - top[:, 2] + DLR_EPSILON)


def dlr_targeted_loss(labels, logits, targets):
    """The targeted DLR loss (Croce & Hein 2020, eq. 7), per example:

        -(z_y - z_t) / (z_pi1 - (z_pi3 + z_pi4) / 2 + 1e-12),

    maximised (it pushes z_t above z_y) by APGD-T.

    Args:
      labels: int [B], the true classes y; logits: float [B, K], K >= 4;
      targets: int [B], the target classes t.

    Returns:
      float [B].

    Raises:
      ValueError: K < 4.
    """
    logits = _require_classes(logits, 4, "the targeted DLR loss")
    top = tf.math.top_k(logits, 4).values
    label_logit = tf.gather(logits, tf.cast(labels, tf.int32), batch_dims=1)
    target_logit = tf.gather(logits, tf.cast(targets, tf.int32), batch_dims=1)
    return -(label_logit - target_logit) / (top[:, 0] - 0.5 * (top[:, 2] + top[:, 3]) + DLR_EPSILON)


def runner_up_targets(clean_logits, count: int):
    """APGD-T's targets: the classes of the 2nd, ..., (count+1)-th largest clean logits,
    int64 [B, count] (for a clean-correct example the largest is y)."""
    return tf.cast(tf.math.top_k(clean_logits, count + 1).indices[:, 1:], tf.int64)


def auto_pgd(
    model_fn,
    x,
    y=None,
    *,
    eps,
    steps: int = 100,
    norm="linf",
    loss: str = "ce",
    clip_min=0.0,
    clip_max=1.0,
    rand_init: bool = True,
    seed=None,
    restarts: int = 1,
    n_target_classes: int = 9,
    rho: float = 0.75,
    momentum: float = 0.75,
    initial_step: float = 2.0,
    eot_iter: int = 1,
):
    """APGD-CE, APGD-DLR or APGD-T (Croce & Hein 2020, Algorithm 1; eqs. 6-7).

    Only the examples the model classifies correctly are attacked (the others are returned
    unchanged, as the reference does). Each run (a restart, or for APGD-T a target times a
    restart) attacks the examples no run has fooled yet. An example counts as fooled once
    any iterate of a run is misclassified (argmax != y, also for APGD-T); it is returned as
    the last misclassified iterate of the run that fooled it. An example never fooled is
    returned at the highest loss any run reached (the reference returns the clean x; both
    are classified correctly, and this one is useful for adversarial training).

    Args:
      model_fn: images -> logits (see `as_logits_fn`).
      x: float [B, ...] in [clip_min, clip_max].
      y: int [B] true labels; None: the model's predictions on x.
      eps: the radius of the `norm` ball; steps: iterations per run (100).
      norm: 'linf' or 'l2'.
      loss: 'ce' (cross-entropy), 'dlr' (eq. 6) or 't' (eq. 7 against the
        `n_target_classes` runner-up classes of the clean logits; at most K - 1 are used).
      clip_min, clip_max: the input range.
      rand_init: the reference's random start (see `_apgd_core.random_start`); else x.
      seed: int [2] tensor; run r draws its start from `restart_seed(seed, r)`, keyed per
        example (`_common`), so the result does not depend on the batch or replica split.
      restarts: runs per loss (per target for 't'); rho, momentum, initial_step: Algorithm 1's
        rho, alpha and eta_0 / eps.
      eot_iter: gradients averaged per iteration (expectation over transformation, for models
        with random inference; AutoAttack's 'rand' version uses 20).

    Returns:
      x_adv, float like x, no gradient.

    Raises:
      ValueError: a bad loss, norm, steps or restarts; K < 3 for 'dlr' or K < 4 for 't'.
    """
    if loss not in LOSSES:
        raise ValueError(f"unknown APGD loss {loss!r}; expected one of {', '.join(LOSSES)}")
    if steps < 0 or restarts < 1 or eot_iter < 1 or n_target_classes < 1:
        raise ValueError(
            f"APGD needs steps >= 0 and restarts, eot_iter, n_target_classes >= 1; got steps={steps}, "
            f"restarts={restarts}, eot_iter={eot_iter}, n_target_classes={n_target_classes}"
        )
    norm = _common.normalize_norm(norm)
    logits_fn = as_logits_fn(model_fn)
    x, y = _common.prepare_inputs(logits_fn, x, y, False)
    if _common.is_empty_batch(x):
        return x
    seed = _common.as_seed(seed)
    y = tf.cast(y, tf.int64)
    clean_logits = tf.cast(logits_fn(x), tf.float32)
    classes = clean_logits.shape[-1]
    if loss == "dlr":
        _require_classes(clean_logits, 3, "apgd_dlr")
    targets_per_run, n_targets = None, 1
    if loss == "t":
        _require_classes(clean_logits, 4, "apgd_t")
        n_targets = min(n_target_classes, classes - 1) if classes is not None else n_target_classes
        targets_per_run = runner_up_targets(clean_logits, n_targets)
    runs = restarts * n_targets
    done = tf.not_equal(_common.predicted_labels(clean_logits), y)  # clean-misclassified: left as is

    def attack_run(index, xs, ys, targets):
        if loss == "ce":
            loss_fn = xent_loss
        elif loss == "dlr":
            loss_fn = dlr_loss
        else:
            loss_fn = lambda labels, logits: dlr_targeted_loss(labels, logits, targets)

        def evaluate(point):
            def one(_):
                return _common.loss_gradient(logits_fn, loss_fn, point, ys, False, return_logits=True)

            def more(j, total, _):
                grad, logits = one(j)
                return j + 1, total + grad, logits

            grad, logits = one(0)
            if eot_iter > 1:  # the reference keeps the logits of the last draw
                _, grad, logits = tf.while_loop(
                    lambda j, *_: j < eot_iter, more, (tf.constant(1), grad, logits)
                )
                grad = grad / eot_iter
            logits = tf.cast(logits, tf.float32)
            wrong = tf.not_equal(_common.predicted_labels(logits), ys)
            return loss_fn(labels=ys, logits=logits), wrong, grad

        if rand_init:
            run_seed = _common.fold_seed(restart_seed(seed, index), _common.STREAM_RANDOM_START)
            start = _apgd_core.random_start(xs, norm, eps, run_seed, clip_min, clip_max)
        else:
            start = xs
        result = _apgd_core.run(
            evaluate,
            xs,
            start,
            norm=norm,
            eps=eps,
            steps=steps,
            rho=rho,
            momentum=momentum,
            initial_step=initial_step,
            clip_min=clip_min,
            clip_max=clip_max,
        )
        fooled = _common.broadcast_mask(result.fooled, xs)
        return tf.where(fooled, result.x_fooled, result.x_best), result.loss_best, result.fooled

    def body(index, x_adv, best_loss, done):
        todo = tf.where(tf.logical_not(done))
        targets = None if targets_per_run is None else targets_per_run[:, index // restarts]

        def attack_rest():
            pick = lambda t: tf.gather(t, todo[:, 0])
            candidate, run_loss, fooled = attack_run(
                index, pick(x), pick(y), None if targets is None else pick(targets)
            )
            take = tf.logical_or(fooled, run_loss > pick(best_loss))
            kept = tf.where(_common.broadcast_mask(take, candidate), candidate, pick(x_adv))
            return (
                tf.tensor_scatter_nd_update(x_adv, todo, kept),
                tf.tensor_scatter_nd_update(best_loss, todo, tf.where(take, run_loss, pick(best_loss))),
                tf.tensor_scatter_nd_update(done, todo, fooled),
            )

        # An empty share skips the run (oneDNN's convolution gradients reject a batch of 0).
        x_adv, best_loss, done = tf.cond(tf.size(todo) > 0, attack_rest, lambda: (x_adv, best_loss, done))
        return index + 1, x_adv, best_loss, done

    best_loss = tf.fill(tf.shape(y), tf.constant(float("-inf")))
    _, x_adv, _, _ = tf.while_loop(
        lambda index, *_: index < runs,
        body,
        (tf.constant(0), x, best_loss, done),
        maximum_iterations=runs,
    )
    return tf.stop_gradient(x_adv)


@dataclasses.dataclass(frozen=True)
class ApgdOptions(Config):
    """Options of the APGD family (Croce & Hein 2020; defaults: AutoAttack 'standard')."""

    n_target_classes: int = setting(
        9, "APGD-T's targets: the runner-up classes of the clean logits", check=at_least(1), flag=False
    )
    rho: float = setting(0.75, "fraction rho of condition 1 (Algorithm 1)", check=in_range(0, 1), flag=False)
    momentum: float = setting(0.75, "momentum alpha of the update (eq. 2)", check=in_range(0, 1), flag=False)
    initial_step: float = setting(2.0, "the first step eta_0, in units of eps", check=positive, flag=False)
    restarts: int | None = setting(
        None,
        "runs per loss (per target for apgd_t); None: the threat's `restarts` (default 1, as AutoAttack)",
        kind="int",
        check=at_least(1),
        flag=False,
    )
    eot_iter: int = setting(
        1, "gradients averaged per iteration (AutoAttack's 'rand' version: 20)", check=at_least(1), flag=False
    )


def _build(spec: AttackSpec, logits_fn, threat: Threat, options: ApgdOptions):
    restarts = threat.restarts if options.restarts is None else options.restarts

    def run(x, labels, seed):
        return auto_pgd(
            logits_fn,
            x,
            labels,
            eps=threat.eps,
            steps=spec.steps,
            norm=spec.norm,
            loss=spec.loss,
            clip_min=threat.clip_min,
            clip_max=threat.clip_max,
            rand_init=spec.rand_init,
            seed=seed,
            restarts=restarts,
            n_target_classes=options.n_target_classes,
            rho=options.rho,
            momentum=options.momentum,
            initial_step=options.initial_step,
            eot_iter=options.eot_iter,
        )

    return run


FAMILY = AttackFamily(
    name="apgd",
    build=_build,
    multi_step=True,
    losses=LOSSES,
    norms=("linf", "l2"),
    targetable=False,
    default_rand_init=True,
    options=ApgdOptions,
    default_steps=100,
)
