"""Fast gradient (sign) method, L-inf and L2, with an optional random step.

FGSM: Goodfellow et al. 2015, "Explaining and harnessing adversarial examples".
Random step (R+FGSM, R+Step-LL): Tramèr et al. 2018, "Ensemble adversarial training".
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from lrm_tf.attacks import _common
from lrm_tf.attacks.adapters import as_logits_fn
from lrm_tf.attacks.losses import get_loss
from lrm_tf.attacks.restarts import gradient_attack_restarts
from lrm_tf.attacks.spec import AttackFamily, AttackSpec
from lrm_tf.config import Config, Threat
from lrm_tf.config.setting import positive, setting


def fast_gradient_method(
    model_fn,
    x,
    y=None,
    *,
    eps,
    norm="linf",
    loss="xent",
    clip_min=0.0,
    clip_max=1.0,
    targeted=False,
    rand_alpha=0.0,
    seed=None,
    restarts=1,
    l2_normalization="exact",
):
    """One gradient step of size eps: x + eps * sign(grad_x loss) for L-inf (Goodfellow et
    al. 2015, eq. 3), x + eps * grad / ||grad||_2 for L2; CleverHans `fast_gradient_method`
    maths, then clipped to [clip_min, clip_max].

    Args:
      model_fn: images -> logits (see `as_logits_fn`).
      x: float [B, H, W, C] in [clip_min, clip_max] ([0, 1] by default).
      y: int [B] true labels (untargeted) or targets (targeted); None uses the model's
        predictions (CleverHans' default, against label leaking).
      eps: the budget, in the input scale.
      norm: 'linf' (or np.inf) or 'l2' (or 2).
      loss: 'xent', 'cw' or a callable(labels, logits) -> [B].
      clip_min, clip_max: the input range.
      targeted: descend the loss towards y instead of ascending it.
      rand_alpha: 0 for plain FGSM. Otherwise R+FGSM (Tramèr et al. 2018, sec. 4.1): first
        move to x' = x + alpha * u, with u = sign(N(0, I)) for L-inf or a random unit vector
        for L2, clip x' to the range, then take the gradient step of size eps - alpha from
        x'; the total perturbation stays within eps.
      seed: int [2] tensor for the random step.
      restarts: worst case over that many random steps (only with rand_alpha > 0).
      l2_normalization: 'exact' (grad / ||grad||: the step has size eps) or 'cleverhans'
        (grad / max(||grad||, 1e-6), CleverHans `utils.optimize_linear`).

    Returns:
      x_adv, float [B, H, W, C], no gradient.

    Raises:
      ValueError: an unknown norm, loss or l2_normalization, or y missing for a targeted
        attack.
    """
    logits_fn = as_logits_fn(model_fn)
    loss_fn = get_loss(loss)
    norm = _common.normalize_norm(norm)
    _common.check_l2_normalization(l2_normalization)
    x, y = _common.prepare_inputs(logits_fn, x, y, targeted)
    if _common.is_empty_batch(x):
        return x
    seed = _common.as_seed(seed)
    random_step = rand_alpha is not None and rand_alpha > 0

    def attack_once(attack_seed):
        start = x
        step_size = eps
        if random_step:
            keys = _common.example_keys(x)
            direction = _common.random_direction(
                x, norm, _common.fold_seed(attack_seed, _common.STREAM_RANDOM_STEP), keys
            )
            start = _common.clip_to_range(x + rand_alpha * direction, clip_min, clip_max)
            step_size = eps - rand_alpha
        grad = _common.loss_gradient(logits_fn, loss_fn, start, y, targeted)
        x_adv = start + _common.optimize_linear(grad, step_size, norm, l2_normalization)
        return tf.stop_gradient(_common.clip_to_range(x_adv, clip_min, clip_max))

    return gradient_attack_restarts(
        attack_once, random_step, logits_fn, loss_fn, x, y, seed, restarts, targeted
    )


@dataclasses.dataclass(frozen=True)
class FgsmOptions(Config):
    """Options of the FGSM family (R+FGSM and R+Step, Tramèr et al. 2018, sec. 4.1)."""

    rand_step_alpha: float | None = setting(
        None,
        "size alpha of the random step before the gradient step, in the [0, 1] input "
        "scale; must lie in (0, eps). None: eps / 2, as Tramèr et al.",
        kind="float",
        check=positive,
        flag=False,
    )


def _build(spec: AttackSpec, logits_fn, threat: Threat, options: FgsmOptions):
    if spec.rand_init:
        alpha = options.rand_step_alpha
        rand_alpha = threat.eps / 2 if alpha is None else alpha
        if not 0 < rand_alpha < threat.eps:
            raise ValueError(
                f"{spec.name}: the random step alpha={rand_alpha} must lie in (0, eps={threat.eps})"
            )
    else:
        rand_alpha = 0.0

    def run(x, labels, seed):
        return fast_gradient_method(
            logits_fn,
            x,
            labels,
            eps=threat.eps,
            norm=spec.norm,
            loss=spec.loss,
            clip_min=threat.clip_min,
            clip_max=threat.clip_max,
            targeted=spec.targeted,
            rand_alpha=rand_alpha,
            seed=seed,
            restarts=threat.restarts if spec.rand_init else 1,
            l2_normalization=threat.l2_normalization,
        )

    return run


FAMILY = AttackFamily(
    name="fgsm",
    build=_build,
    multi_step=False,
    losses=("xent", "cw"),
    norms=("linf", "l2"),
    targetable=True,
    default_rand_init=False,
    options=FgsmOptions,
)
