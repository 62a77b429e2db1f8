"""Projected gradient descent, L-inf and L2, with random start and random restarts.

Madry et al. 2018, "Towards deep learning models resistant to adversarial attacks"
(without random start: the basic iterative method of Kurakin et al. 2017).

The order of operations is CleverHans' `projected_gradient_descent`: start = clip(x +
clip_eta(eta0)); each step = FGM step of size eps_step, clip to the range, project the
perturbation with `clip_eta`, clip to the range again. Unlike CleverHans, whose Python loop
is unrolled into the graph when traced, the steps run in a `tf.while_loop`: tracing PGD-1000
builds the same graph as PGD-10.
"""

from __future__ import annotations

import tensorflow as tf

from lrm_tf.attacks import _common
from lrm_tf.attacks.adapters import as_logits_fn
from lrm_tf.attacks.losses import get_loss
from lrm_tf.attacks.restarts import gradient_attack_restarts
from lrm_tf.attacks.spec import AttackFamily, AttackSpec
from lrm_tf.config import Threat

# Madry et al.'s step rule: step = 2.5 * eps / steps lets a walk cross the ball (from one
# face to the other, plus slack for projections), whatever the number of steps.
STEP_FACTOR = 2.5


def proportional_eps_step(eps: float, steps: int) -> float:
    """Madry et al.'s PGD step size for a given eps: 2.5 * eps / steps.

    Args:
      eps: the ball's radius, in the [0, 1] input scale.
      steps: the number of PGD steps (>= 1).

    Returns:
      The step size, in the same scale as eps.
    """
    return STEP_FACTOR * eps / steps


def pgd_spec(steps: int, loss: str = "xent", norm: str = "linf", rand_init: bool = True) -> AttackSpec:
    """The AttackSpec of untargeted PGD (Madry et al. 2018; without random start: the basic
    iterative method of Kurakin et al. 2017), named canonically ('pgd20_xent').

    Args:
      steps: iterations (>= 1).
      loss: 'xent' or 'cw' (Carlini & Wagner's margin, Madry's form).
      norm: 'linf' or 'l2'.
      rand_init: random start in the ball.

    Returns:
      The spec, as `parse_attack` gives it for its name.

    Raises:
      ValueError: a value PGD does not take.
    """
    return AttackSpec(
        family="pgd", steps=steps, loss=loss, norm=norm, rand_init=rand_init, target="none", name=""
    ).replace()


def projected_gradient_descent(
    model_fn,
    x,
    y=None,
    *,
    eps,
    eps_step,
    steps,
    norm="linf",
    loss="xent",
    clip_min=0.0,
    clip_max=1.0,
    targeted=False,
    rand_init=True,
    rand_minmax=None,
    seed=None,
    restarts=1,
    attack_xla_step=False,
    l2_normalization="exact",
):
    """`steps` steps of size `eps_step` inside the `norm` ball of radius `eps` (Madry et al.
    2018, eq. 2; without random start the basic iterative method of Kurakin et al. 2017).

    Args:
      model_fn: images -> logits (see `as_logits_fn`).
      x: float [B, H, W, C] in [clip_min, clip_max] ([0, 1] by default).
      y: int [B] true labels (untargeted) or targets (targeted); None uses the model's
        predictions on the clean x, as CleverHans does.
      eps: the ball's radius; eps_step: the step size (both in the input scale).
      steps: iterations (>= 0; 0 returns the projected start).
      norm: 'linf' (or np.inf) or 'l2' (or 2).
      loss: 'xent', 'cw' (Carlini & Wagner 2017, Madry's form) or a callable(labels,
        logits) -> [B]; maximised, minimised if targeted.
      clip_min, clip_max: the input range.
      targeted: descend the loss towards y.
      rand_init: start uniformly in the ball of radius `rand_minmax` (default eps), drawn
        per example from `seed` (see `_common`).
      seed: int [2] tensor.
      restarts: worst case per example over that many random starts (ignored without
        rand_init: every restart would be the same).
      attack_xla_step: XLA-compile one step (forward, backward, projection); the loop
        itself is never compiled (XLA over the whole while-loop was 4x slower on CPU).
      l2_normalization: how an L2 step divides by the gradient norm: 'exact' (every step
        has size eps_step) or 'cleverhans' (norm floored at 1e-6, as CleverHans
        `utils.optimize_linear` and `utils.clip_eta`); see `_common.optimize_linear`.

    Returns:
      x_adv, float [B, H, W, C], within eps of x and in the range, no gradient.

    Raises:
      ValueError: steps < 0, an unknown norm, loss or l2_normalization, or y missing for a
        targeted attack.
    """
    logits_fn = as_logits_fn(model_fn)
    loss_fn = get_loss(loss)
    norm = _common.normalize_norm(norm)
    _common.check_l2_normalization(l2_normalization)
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    x, y = _common.prepare_inputs(logits_fn, x, y, targeted)
    if _common.is_empty_batch(x):
        return x
    seed = _common.as_seed(seed)
    if rand_minmax is None:
        rand_minmax = eps

    def step(x_adv):
        grad = _common.loss_gradient(logits_fn, loss_fn, x_adv, y, targeted)
        x_adv = x_adv + _common.optimize_linear(grad, eps_step, norm, l2_normalization)
        x_adv = _common.clip_to_range(x_adv, clip_min, clip_max)
        eta = _common.clip_eta(x_adv - x, norm, eps, l2_normalization)
        # CleverHans clips again: subtracting and re-adding eta can leave the range by an ulp.
        return _common.clip_to_range(x + eta, clip_min, clip_max)

    if attack_xla_step:
        step = tf.function(step, jit_compile=True, autograph=False)

    def attack_once(attack_seed):
        if rand_init:
            eta = _common.random_lp_vector(
                x,
                norm,
                tf.cast(rand_minmax, x.dtype),
                _common.fold_seed(attack_seed, _common.STREAM_RANDOM_START),
                _common.example_keys(x),
            )
        else:
            eta = tf.zeros_like(x)
        start = x + _common.clip_eta(eta, norm, eps, l2_normalization)
        x_adv = _common.clip_to_range(start, clip_min, clip_max)
        _, x_adv = tf.while_loop(
            lambda i, _: i < steps,
            lambda i, x_adv: (i + 1, step(x_adv)),
            (tf.constant(0), x_adv),
            maximum_iterations=steps,
        )
        return tf.stop_gradient(x_adv)

    return gradient_attack_restarts(
        attack_once, rand_init, logits_fn, loss_fn, x, y, seed, restarts, targeted
    )


def _build(spec: AttackSpec, logits_fn, threat: Threat, options=None):
    def run(x, labels, seed):
        return projected_gradient_descent(
            logits_fn,
            x,
            labels,
            eps=threat.eps,
            eps_step=threat.eps_step,
            steps=spec.steps,
            norm=spec.norm,
            loss=spec.loss,
            clip_min=threat.clip_min,
            clip_max=threat.clip_max,
            targeted=spec.targeted,
            rand_init=spec.rand_init,
            seed=seed,
            restarts=threat.restarts,
            attack_xla_step=threat.attack_xla_step,
            l2_normalization=threat.l2_normalization,
        )

    return run


FAMILY = AttackFamily(
    name="pgd",
    build=_build,
    multi_step=True,
    losses=("xent", "cw"),
    norms=("linf", "l2"),
    targetable=True,
    default_rand_init=True,
)
