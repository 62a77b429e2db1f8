"""SPSA, a gradient-free L-inf attack, batched over images.

Uesato et al. 2018, "Adversarial risk and the dangers of evaluating against weak attacks".

Same maths as CleverHans' `cleverhans/tf2/attacks/spsa.py` (which handles one image at a time
and cannot be built under Keras 3: its `SPSAAdam` subclasses the Keras optimizer and passes
`lr=`, which Keras 3 rejects). Per example and per iteration:

* loss to minimise: `margin_logit_loss` = max_{j != y} z_j - z_y, times -1 when untargeted;
* gradient estimate from `spsa_samples` points x + pert +/- delta * s_n, s_n Rademacher
  (sign of U(-1, 1)), the +/- pairs mirrored: g = mean_n(loss_n * delta * s_n) / delta.
  Note: this is CleverHans' formula. The textbook SPSA estimate divides by delta once more
  (it is mean_n(loss_n * s_n) / delta); CleverHans' estimate is that times delta.
  `unbiased_gradient=True` gives the textbook scale. Adam is almost scale-invariant: m_hat /
  sqrt(u_hat) is unchanged by the scale, only Adam's epsilon (1e-7) weighs differently, so
  the two choices agree unless the estimate is tiny;
* Adam step (beta_1 0.9, beta_2 0.999, epsilon 1e-7: the Keras `Adam` defaults that
  CleverHans' tf2 `SPSAAdam` inherits), written with tensors, no optimizer object;
* projection: clip the perturbation to [-eps, eps], then x + pert to [clip_min, clip_max].
  As in CleverHans, the probe points x + pert +/- delta * s are not clipped to the range.
* start: uniform in [-eps, eps], projected.

Batching: each example draws its own perturbations (`_common` explains the per-example
streams); the model sees B * `chunk_samples` probe images per call and the samples of one
iteration are summed over `spsa_samples / chunk_samples` calls, so memory stays bounded.
Draws depend on `chunk_samples` (one stream per chunk), not on the batch.
Early stopping (CleverHans: stop when the loss falls below a threshold) is per example here:
an example whose loss at its projected point is below the threshold is frozen, and the loop
ends when every example is frozen.
"""

from __future__ import annotations

import tensorflow as tf

from lrm_tf.attacks import _common
from lrm_tf.attacks.adapters import as_logits_fn
from lrm_tf.attacks.losses import margin_loss
from lrm_tf.attacks.restarts import worst_case_over_restarts
from lrm_tf.attacks.spec import AttackFamily, AttackSpec
from lrm_tf.config import SpsaOptions, Threat

ADAM_BETA_1 = 0.9
ADAM_BETA_2 = 0.999
ADAM_EPSILON = 1e-7


def spsa_loss(labels, logits, targeted: bool):
    """CleverHans' SPSA loss (minimised): the margin loss, negated for untargeted attacks.

    Args:
      labels: int [B]; logits: float [B, classes]; targeted: whether labels are targets.

    Returns:
      float [B].
    """
    return (1.0 if targeted else -1.0) * margin_loss(labels, logits)


def _flat_batch_shape(x, leading):
    """Shape [leading, *example shape], static where x's example shape is static."""
    if x.shape[1:].is_fully_defined():
        return [leading] + x.shape[1:].as_list()
    return tf.concat([[leading], tf.shape(x)[1:]], axis=0)


def _float_inputs(x, *like_x):
    """x as a float tensor (numpy arrays and lists too; a non-float x becomes float32, as in
    `_common.prepare_inputs`), and each of `like_x` as a tensor of x's dtype."""
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        x = tf.cast(x, tf.float32)
    return (x, *(tf.cast(tf.convert_to_tensor(t), x.dtype) for t in like_x))


def spsa_probe_sum(logits_fn, x_eval, labels, signs, *, delta, targeted):
    """sum_n loss(x_eval + d_n) * d_n over the probes d = delta * [signs, -signs].

    Args:
      logits_fn: images -> logits.
      x_eval: float [B, ...], the point the gradient is estimated at.
      labels: int [B].
      signs: float [B, k, ...] Rademacher draws (+-1).
      delta: the finite-difference step.
      targeted: as for `spsa_loss`.

    Returns:
      float [B, ...], x_eval's float dtype (numpy inputs are accepted). One model call on
      B * 2k images.
    """
    x_eval, signs = _float_inputs(x_eval, signs)
    probes = delta * tf.concat([signs, -signs], axis=1)  # [B, 2k, ...]
    num_probes = tf.shape(probes)[1]
    points = tf.reshape(tf.expand_dims(x_eval, 1) + probes, _flat_batch_shape(x_eval, -1))
    logits = logits_fn(points)
    losses = spsa_loss(tf.repeat(labels, num_probes), logits, targeted)
    losses = tf.reshape(losses, tf.concat([[-1, num_probes], tf.ones_like(tf.shape(x_eval)[1:])], axis=0))
    return tf.reduce_sum(tf.cast(losses, probes.dtype) * probes, axis=1)


def spsa_gradient_estimate(
    model_fn, x_eval, labels, signs, *, delta=0.01, targeted=False, unbiased_gradient=False
):
    """CleverHans' SPSA estimate from an explicit draw: mean(loss * delta_x) / delta over the
    mirrored probes delta_x = delta * [signs, -signs]; see the module docstring for the scale.

    Args:
      model_fn: images -> logits; x_eval: float [B, ...]; labels: int [B]; signs: float
        [B, k, ...] Rademacher draws; delta, targeted: as for `spsa_probe_sum`.
      unbiased_gradient: divide by delta once more (the textbook estimate).

    Returns:
      float [B, ...], the gradient estimate of the loss `spsa_loss` minimises (numpy inputs
      are accepted, as by every attack function).
    """
    logits_fn = as_logits_fn(model_fn)
    x_eval, signs = _float_inputs(x_eval, signs)
    total = spsa_probe_sum(logits_fn, x_eval, labels, signs, delta=delta, targeted=targeted)
    num_probes = tf.cast(2 * tf.shape(signs)[1], total.dtype)
    grad = total / num_probes / delta
    return grad / delta if unbiased_gradient else grad


def adam_update(
    value, grad, m, u, t, *, learning_rate, beta_1=ADAM_BETA_1, beta_2=ADAM_BETA_2, epsilon=ADAM_EPSILON
):
    """CleverHans `SPSAAdam._apply_gradients` for step number t (1-based; Kingma & Ba 2015).

    Args:
      value, grad, m, u: tensors of one shape (the perturbation, its gradient estimate, and
        Adam's first and second moments); t: the step number as a float tensor.
      learning_rate, beta_1, beta_2, epsilon: Adam's constants (Keras' defaults).

    Returns:
      (new value, new m, new u).
    """
    m = beta_1 * m + (1.0 - beta_1) * grad
    u = beta_2 * u + (1.0 - beta_2) * grad * grad
    m_hat = m / (1.0 - tf.pow(beta_1, t))
    u_hat = u / (1.0 - tf.pow(beta_2, t))
    return value - learning_rate * m_hat / (tf.sqrt(u_hat) + epsilon), m, u


def project_perturbation(perturbation, eps, x, clip_min, clip_max):
    """CleverHans `_project_perturbation`: into the L-inf ball, then into the range.

    Returns:
      The perturbation p with |p| <= eps and x + p in [clip_min, clip_max], shaped like x.
    """
    clipped = tf.clip_by_value(perturbation, -eps, eps)
    return _common.clip_to_range(x + clipped, clip_min, clip_max) - x


def draw_signs(x, seed, keys, iteration, chunk, num_pairs):
    """The Rademacher draw [B, num_pairs, ...] of one chunk of one iteration."""
    stream = _common.fold_seed(seed, _common.STREAM_SPSA_SAMPLES, iteration, chunk)
    shape = tf.concat([[num_pairs], tf.shape(x)[1:]], axis=0)
    # CleverHans: sign(uniform(-1, 1)).
    signs = tf.sign(_common.per_example_uniform(stream, keys, shape, -1.0, 1.0, x.dtype))
    # The reshape restores the static shape the map over examples hides from the tracer.
    return tf.reshape(signs, tf.concat([tf.shape(x)[:1], [num_pairs], tf.shape(x)[1:]], 0))


def initial_perturbation(x, eps, seed, keys, clip_min, clip_max):
    """Uniform in [-eps, eps] per pixel, projected (CleverHans `projected_optimization`)."""
    start = _common.random_lp_vector(x, "linf", eps, _common.fold_seed(seed, _common.STREAM_SPSA_INIT), keys)
    return project_perturbation(start, eps, x, clip_min, clip_max)


def _pairs_per_chunk(num_pairs, chunk_samples):
    """The largest divisor of num_pairs that is at most chunk_samples / 2 (and at least 1)."""
    limit = max(1, min(num_pairs, chunk_samples // 2))
    return max(d for d in range(1, limit + 1) if num_pairs % d == 0)


def spsa(
    model_fn,
    x,
    y=None,
    *,
    eps,
    steps,
    seed=None,
    clip_min=0.0,
    clip_max=1.0,
    targeted=False,
    learning_rate=0.01,
    delta=0.01,
    spsa_samples=128,
    chunk_samples=32,
    early_stop_loss_threshold=None,
    unbiased_gradient=False,
    restarts=1,
):
    """SPSA with Adam for `steps` iterations on a batch (Uesato et al. 2018, alg. 1; see the
    module docstring for CleverHans' form).

    Args:
      model_fn: images -> logits (see `as_logits_fn`); only called, never differentiated.
      x: float [B, H, W, C] in [clip_min, clip_max] ([0, 1] by default).
      y: int [B] true labels (untargeted) or targets (targeted); None: the predictions.
      eps: the L-inf budget, in the input scale.
      steps: iterations.
      seed: int [2] tensor.
      clip_min, clip_max: the input range (required, as in CleverHans).
      targeted: minimise the margin towards y.
      learning_rate: Adam's step on the perturbation.
      delta: the finite-difference step.
      spsa_samples: probes per iteration and example (even: they come in +/- pairs).
      chunk_samples: probes per example in one model call (the call sees B * chunk_samples).
      early_stop_loss_threshold: freeze an example once its loss is below this (None: never).
      unbiased_gradient: the textbook estimate's scale instead of CleverHans'.
      restarts: worst case per example over that many random starts and draws.

    Returns:
      x_adv, float [B, H, W, C], within eps of x and in the range, no gradient.

    Raises:
      ValueError: spsa_samples odd or < 2, a missing clip bound, or y missing for a
        targeted attack.
    """
    if spsa_samples < 2 or spsa_samples % 2:
        raise ValueError(f"spsa_samples must be even and >= 2, got {spsa_samples}")
    if clip_min is None or clip_max is None:
        raise ValueError("SPSA needs clip_min and clip_max (as in CleverHans)")
    logits_fn = as_logits_fn(model_fn)
    x, y = _common.prepare_inputs(logits_fn, x, y, targeted)
    if _common.is_empty_batch(x):
        return x
    labels = tf.cast(y, tf.int64)
    seed = _common.as_seed(seed)
    keys = _common.example_keys(x)
    num_pairs = spsa_samples // 2
    pairs_per_chunk = _pairs_per_chunk(num_pairs, chunk_samples)
    num_chunks = num_pairs // pairs_per_chunk

    def gradient(x_eval, attack_seed, iteration):
        def chunk_sum(chunk):
            signs = draw_signs(x, attack_seed, keys, iteration, chunk, pairs_per_chunk)
            return spsa_probe_sum(logits_fn, x_eval, labels, signs, delta=delta, targeted=targeted)

        if num_chunks == 1:
            total = chunk_sum(0)
        else:
            _, total = tf.while_loop(
                lambda c, _: c < num_chunks,
                lambda c, acc: (c + 1, acc + chunk_sum(c)),
                (tf.constant(0), tf.zeros_like(x_eval)),
                maximum_iterations=num_chunks,
            )
        grad = total / tf.cast(spsa_samples, x.dtype) / delta
        return grad / delta if unbiased_gradient else grad

    def attack_once(attack_seed):
        perturbation = initial_perturbation(x, eps, attack_seed, keys, clip_min, clip_max)
        active = tf.ones(tf.shape(x)[:1], tf.bool)

        def body(i, perturbation, m, u, active):
            grad = gradient(x + perturbation, attack_seed, i)
            t = tf.cast(i + 1, x.dtype)
            new_perturbation, new_m, new_u = adam_update(
                perturbation, grad, m, u, t, learning_rate=learning_rate
            )
            new_perturbation = project_perturbation(new_perturbation, eps, x, clip_min, clip_max)
            # Frozen (early-stopped) examples keep their state.
            keep = _common.broadcast_mask(active, x)
            perturbation = tf.where(keep, new_perturbation, perturbation)
            m = tf.where(keep, new_m, m)
            u = tf.where(keep, new_u, u)
            if early_stop_loss_threshold is not None:
                loss = spsa_loss(labels, logits_fn(x + perturbation), targeted)
                active = tf.logical_and(active, loss >= early_stop_loss_threshold)
            return i + 1, perturbation, m, u, active

        def cond(i, perturbation, m, u, active):
            return tf.logical_and(i < steps, tf.reduce_any(active))

        _, perturbation, _, _, _ = tf.while_loop(
            cond,
            body,
            (tf.constant(0), perturbation, tf.zeros_like(x), tf.zeros_like(x), active),
            maximum_iterations=steps,
        )
        return tf.stop_gradient(x + perturbation)

    return worst_case_over_restarts(
        attack_once,
        logits_fn,
        lambda lab, logits: -spsa_loss(lab, logits, targeted),
        x,
        labels,
        seed,
        restarts,
        targeted,
    )


def _build(spec: AttackSpec, logits_fn, threat: Threat, options: SpsaOptions):
    def run(x, labels, seed):
        return spsa(
            logits_fn,
            x,
            labels,
            eps=threat.eps,
            steps=spec.steps,
            seed=seed,
            clip_min=threat.clip_min,
            clip_max=threat.clip_max,
            targeted=spec.targeted,
            learning_rate=options.spsa_lr,
            delta=options.spsa_delta,
            spsa_samples=options.spsa_samples,
            chunk_samples=options.spsa_chunk_samples,
            early_stop_loss_threshold=options.spsa_early_stop_loss,
            unbiased_gradient=options.spsa_unbiased_gradient,
            restarts=threat.restarts,
        )

    return run


# SPSA costs spsa_samples x iterations forward passes per example, so evaluations run it on
# the first `spsa_examples` test examples only (LRM, Summers & Dinneen, evaluate on 1,000).
FAMILY = AttackFamily(
    name="spsa",
    build=_build,
    multi_step=True,
    fixed_loss="margin",
    norms=("linf",),
    targetable=True,
    default_rand_init=True,
    options=SpsaOptions,
    examples=lambda options: options.spsa_examples,
)
