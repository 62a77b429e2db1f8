"""Building blocks shared by the attacks.

* CleverHans' step and projection maths (`optimize_linear`, `clip_eta`), reproduced op for op
  so that our attacks match `cleverhans.tf2` to float precision.
* Per-example randomness. Every random draw of an example comes from a Philox stream keyed
  by (the caller's seed, a purpose tag, a 64-bit fingerprint of the example's bytes). Why:
  the same example then gets the same random start whatever batch it sits in, whatever its
  position, and however `MirroredStrategy` splits the global batch over replicas (evenly or
  not), so a distributed evaluation reproduces the single-device one exactly and results do
  not depend on the evaluation batch size. Different seeds give different draws. The price:
  two byte-identical images in one batch get the same random start (harmless: they are the
  same example). The draws are made per example with `tf.map_fn` (stateless ops take one
  seed per call); that costs B small kernel launches per draw, negligible next to the model.
  The Philox algorithm is named explicitly because the default 'auto_select' may pick a
  different generator on another device type.
* Gradients that survive half precision. Under a mixed-precision policy the backward pass
  runs in float16 (or bfloat16), where the loss gradient of a confidently classified example
  (1e-9 and below) flushes to zero; `loss_gradient` scales each example's loss before the
  backward pass and unscales after (loss scaling, Micikevicius et al. 2018), so every policy
  sees float32's gradients. The scales are powers of two: in float32 they change no bit.
* Two L2 normalisations of a step (`L2_NORMALIZATIONS`): CleverHans' (the norm floored at
  1e-6, for faithful comparison) and the exact one (BUILD_NOTES.md, "L2 step normalisation").
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from lrm_tf.attacks.adapters import LogitsFn
from lrm_tf.attacks.losses import LossFn

# Same constant as CleverHans' utils.py; it sits inside the sqrt there, and here.
AVOID_ZERO_DIV = 1e-12
RNG_ALG = "philox"

# 'exact': g / ||g||; 'cleverhans': g / max(||g||, 1e-6), CleverHans' utils.optimize_linear.
L2_NORMALIZATIONS = ("exact", "cleverhans")
# An example whose loss-scaled gradient overflows (inf or nan in half precision) is computed
# again with its scale times this factor (the factor LossScaleOptimizer grows by every 2000
# steps is 2; one retry has to cover the range, so 16 binades at once).
OVERFLOW_BACKOFF = 2.0**-16

# Purpose tags, folded into the seed so that independent draws never share a stream.
STREAM_RANDOM_START = 1
STREAM_RANDOM_STEP = 2
STREAM_RANDOM_TARGET = 3
STREAM_SPSA_INIT = 4
STREAM_SPSA_SAMPLES = 5


# --------------------------------------------------------------------------------- inputs


def prepare_inputs(logits_fn: LogitsFn, x, y, targeted: bool):
    """Float images, and labels: the model's predictions when y is None (CleverHans'
    default, which avoids label leaking); targeted attacks must be given their targets."""
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        x = tf.cast(x, tf.float32)
    if y is None and not is_empty_batch(x):
        if targeted:
            raise ValueError("a targeted attack needs the target labels y")
        y = predicted_labels(logits_fn(x))
    return x, y


# ------------------------------------------------------------------------ CleverHans maths


def normalize_norm(norm) -> str:
    """'linf' for np.inf / 'linf' / 'inf', 'l2' for 2 / 'l2'."""
    if norm in ("linf", "inf") or (isinstance(norm, (int, float)) and norm == np.inf):
        return "linf"
    if norm in ("l2", 2):
        return "l2"
    raise ValueError(f"unsupported norm {norm!r}; expected 'linf' (np.inf) or 'l2' (2)")


def _example_axes(t):
    return list(range(1, len(t.shape)))


def check_l2_normalization(l2_normalization: str) -> str:
    """Returns `l2_normalization` if it is one of `L2_NORMALIZATIONS`.

    Raises:
      ValueError: any other value.
    """
    if l2_normalization not in L2_NORMALIZATIONS:
        raise ValueError(
            f"unknown l2_normalization {l2_normalization!r}; expected one of {', '.join(L2_NORMALIZATIONS)}"
        )
    return l2_normalization


def l2_norm(t):
    """The exact L2 norm of each example, [B, 1, ...] (keepdims), without underflow.

    The squares of a tiny vector (entries below 1e-19 in float32) flush to zero, so the
    entries are first divided by their largest magnitude: ||t|| = m * ||t / m||.

    Args:
      t: float [B, ...].

    Returns:
      float [B, 1, ...], 0 for an all-zero example.
    """
    axes = _example_axes(t)
    peak = tf.reduce_max(tf.abs(t), axes, keepdims=True)
    unit = tf.math.divide_no_nan(t, peak)
    return peak * tf.sqrt(tf.reduce_sum(tf.square(unit), axes, keepdims=True))


def optimize_linear(grad, eps, norm: str, l2_normalization: str = "exact"):
    """CleverHans `utils.optimize_linear`: argmax of <eta, grad> over the eps ball of `norm`.

    Args:
      grad: float [B, ...], the loss gradient.
      eps: the step size (the ball's radius).
      norm: 'linf' (eps * sign(grad)) or 'l2' (eps * grad / ||grad||).
      l2_normalization: 'exact': grad / ||grad|| (a zero gradient gives a zero step), so a
        step always has size eps; 'cleverhans': grad / sqrt(max(||grad||^2, 1e-12)), op for
        op CleverHans', whose steps shrink to eps * ||grad|| / 1e-6 when ||grad|| < 1e-6.

    Returns:
      The perturbation, float like grad.
    """
    if norm == "linf":
        perturbation = tf.stop_gradient(tf.sign(grad))
    elif check_l2_normalization(l2_normalization) == "cleverhans":
        square = tf.maximum(
            AVOID_ZERO_DIV, tf.reduce_sum(tf.square(grad), _example_axes(grad), keepdims=True)
        )
        perturbation = grad / tf.sqrt(square)
    else:
        perturbation = tf.math.divide_no_nan(grad, l2_norm(grad))
    return tf.multiply(eps, perturbation)


def clip_eta(eta, norm: str, eps, l2_normalization: str = "exact"):
    """CleverHans `utils.clip_eta`: clip (not normalise) the perturbation into the eps ball.

    Args:
      eta: float [B, ...], the perturbation.
      norm: 'linf' or 'l2'.
      eps: the ball's radius.
      l2_normalization: 'exact': eta * min(1, eps / ||eta||); 'cleverhans': the norm floored
        at 1e-6 as CleverHans does (differs only for balls smaller than 1e-6).

    Returns:
      The clipped perturbation, float like eta.
    """
    if norm == "linf":
        return tf.clip_by_value(eta, -eps, eps)
    if check_l2_normalization(l2_normalization) == "cleverhans":
        norm_value = tf.sqrt(
            tf.maximum(AVOID_ZERO_DIV, tf.reduce_sum(tf.square(eta), _example_axes(eta), keepdims=True))
        )
        return eta * tf.minimum(1.0, tf.math.divide(eps, norm_value))
    norm_value = l2_norm(eta)
    # A zero eta stays zero whatever the factor; divide_no_nan keeps it finite.
    return eta * tf.minimum(1.0, tf.math.divide_no_nan(tf.cast(eps, eta.dtype), norm_value))


def clip_to_range(x, clip_min, clip_max):
    if clip_min is None and clip_max is None:
        return x
    if clip_min is None or clip_max is None:
        # CleverHans does not support one-sided clipping either.
        raise ValueError("give both clip_min and clip_max, or neither")
    return tf.clip_by_value(x, clip_min, clip_max)


def _power_of_two_scale(peak):
    """2^-floor(log2(peak)) per entry, float32, so that peak * scale lies in [1, 2).

    Built from the exponent bits, so it is a power of two exactly (multiplying by it, and
    dividing by it again, loses no bit). 1 where peak is 0, inf or nan; within [2^-126, 2^126].
    """
    peak = tf.cast(peak, tf.float32)
    exponent = tf.bitwise.bitwise_and(tf.bitwise.right_shift(tf.bitcast(peak, tf.int32), 23), 0xFF)
    scale = tf.bitcast(tf.bitwise.left_shift(254 - tf.clip_by_value(exponent, 1, 253), 23), tf.float32)
    usable = tf.logical_and(peak > 0, tf.math.is_finite(peak))
    return tf.where(usable, scale, tf.ones_like(scale))


def _logit_gradient(loss_fn: LossFn, logits, labels, targeted: bool):
    """d(sum of per-example losses)/d logits, negated if targeted; computed in at least float32."""
    logits = tf.stop_gradient(logits)
    if logits.dtype in (tf.float16, tf.bfloat16):
        logits = tf.cast(logits, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        loss = loss_fn(labels=labels, logits=logits)
        if targeted:
            loss = -loss
    return tape.gradient(loss, logits)


def _scaled_backward(tape, logits, x, upstream, scale):
    """tape's d logits/dx against `upstream * scale` (per example), divided by the scale."""
    seed = tf.cast(upstream * broadcast_mask(tf.cast(scale, upstream.dtype), upstream), logits.dtype)
    # x's static shape: a SavedModel whose callable was saved without one returns gradients
    # of unknown rank.
    # ZERO: a model whose output does not depend on x (stop_gradient, masking defenses) has
    # a zero gradient, not None.
    grad = tape.gradient(logits, x, output_gradients=seed, unconnected_gradients=tf.UnconnectedGradients.ZERO)
    grad = tf.ensure_shape(grad, x.shape)
    return grad / broadcast_mask(tf.cast(scale, grad.dtype), grad)


def loss_gradient(
    logits_fn: LogitsFn, loss_fn: LossFn, x, labels, targeted: bool, return_logits: bool = False
):
    """CleverHans `utils.compute_gradient`: d(sum of per-example losses)/dx, negated if
    targeted, with per-example loss scaling so that half precision loses no gradient.

    Loss scaling (Micikevicius et al. 2018, "Mixed precision training", sec. 3.2) applied to
    the attack: the gradient of the loss with respect to the logits is computed in float32,
    each example's row is multiplied by the power of two that brings its largest entry into
    [1, 2), the model's backward pass runs on it, and the input gradient is divided by the
    same power of two. The backward pass of a float16 model thus never sees the 1e-9-sized
    values that flush to zero, and a float32 model gets bit for bit the unscaled gradient.
    An example whose scaled gradient overflows (inf or nan) is computed again with its scale
    times `OVERFLOW_BACKOFF`; the retry runs only when some example needs it.

    The scale is per example, so the model must treat examples independently (logits of
    example i depend on image i only), as any model does in inference mode (`as_logits_fn`
    calls Keras models with training=False); the attacks' batch independence rests on it too.

    Args:
      logits_fn: images -> logits float [B, classes] (float16 logits are cast to float32
        before the loss).
      loss_fn: (labels, logits) -> float [B].
      x: float [B, H, W, C]; labels: int [B]; targeted: negate the loss.
      return_logits: also return the logits of the forward pass (APGD needs the loss and the
        prediction at the point whose gradient it takes; this saves a second forward pass).

    Returns:
      float like x, [B, H, W, C]; with return_logits, (that gradient, the logits).
    """
    with tf.GradientTape(persistent=True) as tape:
        tape.watch(x)
        logits = logits_fn(x)
    upstream = _logit_gradient(loss_fn, logits, labels, targeted)
    peak = tf.reduce_max(tf.abs(upstream), _example_axes(upstream))
    scale = _power_of_two_scale(peak)
    grad = _scaled_backward(tape, logits, x, upstream, scale)
    finite = tf.reduce_all(tf.math.is_finite(grad), _example_axes(grad))

    def retry():
        again = _scaled_backward(tape, logits, x, upstream, scale * OVERFLOW_BACKOFF)
        return tf.where(broadcast_mask(finite, grad), grad, again)

    grad = tf.cond(tf.reduce_all(finite), lambda: grad, retry)
    return (grad, logits) if return_logits else grad


def is_empty_batch(x) -> bool:
    """True when x is known at trace time to hold no example (a replica's share of a batch
    smaller than the replica count). Such a graph is returned as is: TF 2.21's grappler
    crashes the process (SIGFPE) while constant-folding SPSA's graph with a static batch of
    0. A batch that is empty only at run time runs fine."""
    return x.shape.rank is not None and x.shape.rank > 0 and x.shape[0] == 0


def predicted_labels(logits):
    return tf.argmax(logits, axis=-1)


def broadcast_mask(mask, like):
    """Reshapes a [B] boolean mask so that it broadcasts against `like` ([B, ...])."""
    return tf.reshape(mask, [-1] + [1] * (len(like.shape) - 1))


# ----------------------------------------------------------------------------- randomness


def as_seed(seed) -> tf.Tensor:
    """An int64 [2] seed tensor; None means the fixed seed (0, 0)."""
    if seed is None:
        seed = (0, 0)
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    return tf.reshape(seed, [2])


def fold_seed(seed, *tags) -> tf.Tensor:
    """The seed for a sub-stream: `seed` with each tag (python or tensor int) folded in."""
    for tag in tags:
        seed = tf.random.experimental.stateless_fold_in(seed, tf.cast(tag, tf.int64), alg=RNG_ALG)
    return seed


def example_keys(x) -> tf.Tensor:
    """A 64-bit fingerprint of each example's bytes, [B] int64 (see the module docstring)."""
    return tf.bitcast(tf.fingerprint(x), tf.int64)


def per_example_seeds(seed, keys) -> tf.Tensor:
    """[B, 2] seeds: the Philox key word of `seed` xor-ed with each example's key."""
    batch_shape = tf.shape(keys)
    return tf.stack([tf.bitwise.bitwise_xor(seed[0], keys), tf.broadcast_to(seed[1], batch_shape)], axis=1)


def _map_rows(draw, seeds, shape, dtype):
    # An empty batch (e.g. a replica's share of a short last batch) cannot go through map_fn:
    # it would have to stack zero elements of unknown shape.
    return tf.cond(
        tf.shape(seeds)[0] > 0,
        lambda: tf.map_fn(draw, seeds, fn_output_signature=dtype),
        lambda: tf.zeros(tf.concat([[0], shape], axis=0), dtype),
    )


# Module-level tf.functions: called eagerly, tf.map_fn would run a Python loop over the batch
# (milliseconds per example); traced once, it is a graph while-loop. Inside an outer
# tf.function they are inlined.
@tf.function(reduce_retracing=True)
def _uniform_rows(seeds, shape, minval, maxval):
    return _map_rows(
        lambda s: tf.random.stateless_uniform(shape, s, minval, maxval, dtype=minval.dtype, alg=RNG_ALG),
        seeds,
        shape,
        minval.dtype,
    )


@tf.function(reduce_retracing=True)
def _normal_rows(seeds, shape, like):
    return _map_rows(
        lambda s: tf.random.stateless_normal(shape, s, dtype=like.dtype, alg=RNG_ALG),
        seeds,
        shape,
        like.dtype,
    )


def _with_static_shape(draws, keys, shape):
    # Once the module-level functions above have seen shapes of two lengths, reduce_retracing
    # relaxes `shape` to [None] and their draws come back with an unknown rank, which breaks
    # every caller that reduces over the example axes. What the caller knows is restored here.
    value = tf.get_static_value(shape)
    if value is not None:
        dims = [int(d) for d in value]
    elif shape.shape.rank == 1 and shape.shape[0] is not None:
        dims = [None] * shape.shape[0]
    else:
        return draws
    return tf.ensure_shape(draws, [keys.shape[0], *dims])


def per_example_uniform(seed, keys, shape, minval, maxval, dtype=tf.float32):
    """[B, *shape] draws, uniform in [minval, maxval), each example from its own stream.
    Integer dtypes draw integers."""
    minval = tf.cast(minval, dtype)
    maxval = tf.cast(maxval, dtype)
    shape = tf.cast(shape, tf.int32)
    return _with_static_shape(
        _uniform_rows(per_example_seeds(seed, keys), shape, minval, maxval), keys, shape
    )


def per_example_normal(seed, keys, shape, dtype=tf.float32):
    """[B, *shape] standard normal draws, each example from its own stream."""
    shape = tf.cast(shape, tf.int32)
    return _with_static_shape(
        _normal_rows(per_example_seeds(seed, keys), shape, tf.zeros([], dtype)), keys, shape
    )


def random_lp_vector(x, norm: str, radius, seed, keys):
    """Uniform in the `norm` ball of `radius`, one draw per example, shaped like `x`.

    Same distributions as CleverHans `random_lp_vector` (uniform per pixel for L-inf; for L2 a
    Gaussian direction scaled by radius * U^(1/d), Calafiore et al. 1998), but stateless and
    keyed per example.
    """
    example_shape = tf.shape(x)[1:]
    radius = tf.cast(radius, x.dtype)
    if norm == "linf":
        return tf.reshape(
            per_example_uniform(seed, keys, example_shape, -radius, radius, x.dtype), tf.shape(x)
        )
    dim = tf.reduce_prod(example_shape)
    direction = per_example_normal(fold_seed(seed, 0), keys, [dim], x.dtype)
    direction = direction / tf.sqrt(tf.reduce_sum(tf.square(direction), 1, keepdims=True))
    scale = tf.pow(
        per_example_uniform(fold_seed(seed, 1), keys, [1], 0.0, 1.0, x.dtype), 1.0 / tf.cast(dim, x.dtype)
    )
    return tf.reshape(radius * scale * direction, tf.shape(x))


def random_direction(x, norm: str, seed, keys):
    """A random step direction of unit size: sign(N(0, I)) for L-inf (Tramèr et al. 2018),
    a uniformly random unit vector for L2."""
    gaussian = tf.reshape(per_example_normal(seed, keys, tf.shape(x)[1:], x.dtype), tf.shape(x))
    if norm == "linf":
        return tf.sign(gaussian)
    return gaussian / tf.sqrt(tf.reduce_sum(tf.square(gaussian), _example_axes(gaussian), keepdims=True))
