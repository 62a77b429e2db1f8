"""FAB-T: the targeted fast adaptive boundary attack, as AutoAttack runs it, L-inf and L2.

Croce & Hein 2020, "Minimally distorted adversarial examples with a fast adaptive boundary
attack" (ICML 2020, arXiv:1907.02044), Sec. 3 and Algorithm 1; the targeted version is the
one of AutoAttack (Croce & Hein 2020, arXiv:2003.01690, Sec. 4), which attacks, for each
of the 9 classes with the highest clean logits after the true one, the linearised boundary
g = z_t - z_y. FAB looks for the smallest perturbation that misclassifies; the attack
counts as a success only when the smallest one it found lies within eps (otherwise the
example is returned unchanged, and counts as robust).

Per iteration (100 by default): one forward and backward pass for g and its gradient at
the iterate x_i, the two exact projections onto the hyperplane within the box
(`fab_projections`), the biased step of Eq. (6)-(7) and one forward pass to see whether the
new iterate is misclassified (then it is kept if smaller than the best so far, and the
iterate steps back towards x_orig, Sec. 3.2). Targets run one after another, each from
x_orig, each only on the examples that no earlier target broke within eps (as AutoAttack's
`perturb`); all loops are `tf.while_loop`s, so the graph does not grow with the
iterations. FAB-T uses no randomness (AutoAttack's later restarts start at random points,
but only in its untargeted and 'plus' versions).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from lrm_tf.attacks import _common
from lrm_tf.attacks.adapters import as_logits_fn
from lrm_tf.attacks.fab_projections import project_onto_hyperplane_in_box
from lrm_tf.attacks.spec import AttackFamily, AttackSpec
from lrm_tf.config import Config, Threat
from lrm_tf.config.setting import at_least, in_range, setting

DEFAULT_ITERATIONS = 100  # AutoAttack's standard version
NORM_FLOOR = 1e-8  # both step norms are floored before alpha (FAB's code)
NOT_FOUND = 1e10  # the norm of "no misclassified point found yet"


@dataclasses.dataclass(frozen=True)
class FabOptions(Config):
    """Options of the FAB-T family (Croce & Hein 2020, arXiv:1907.02044), AutoAttack's values."""

    n_target_classes: int = setting(
        9,
        "targets: the classes ranked 2nd to (n + 1)-th by the clean logits (capped at the "
        "number of classes - 1)",
        check=at_least(1),
        flag=False,
    )
    alpha_max: float = setting(
        0.1, "largest weight of the step from x_orig (Eq. (7))", check=in_range(0.0, 1.0), flag=False
    )
    eta: float = setting(
        1.05, "overshoot of the step onto the hyperplane (Eq. (6))", check=at_least(1.0), flag=False
    )
    beta: float = setting(
        0.9,
        "backward step: a misclassified iterate moves to x_orig + beta (x - x_orig) (Sec. 3.2)",
        check=in_range(0.0, 1.0),
        flag=False,
    )


def _flat_norm(t, norm):
    """The Lp norm of each row of t [N, d], [N]."""
    if norm == "linf":
        return tf.reduce_max(tf.abs(t), axis=1)
    return tf.sqrt(tf.reduce_sum(tf.square(t), axis=1))


def _fab_single_target(
    logits_fn, x0, labels, targets, *, steps, norm, clip_min, clip_max, options, shape, dtype
):
    """One FAB run per example towards its target, from x_orig (AutoAttack's
    `attack_single_run` with is_targeted=True and no random start).

    Args:
      logits_fn: images -> logits.
      x0: float32 [N, d], the flattened clean images.
      labels, targets: int64 [N].
      steps: iterations; norm: 'linf' or 'l2'.
      clip_min, clip_max: the box.
      options: FabOptions.
      shape: the images' shape without the batch dimension (a list when static);
        dtype: the images' dtype.

    Returns:
      (best, best_norm): float32 [N, d], the smallest misclassified iterate found (x0 where
      none was), and its distance to x0 (NOT_FOUND where none was).
    """
    eta = tf.constant(options.eta, tf.float32)
    beta = tf.constant(options.beta, tf.float32)
    alpha_max = tf.constant(options.alpha_max, tf.float32)
    pair = tf.stack([labels, targets], axis=1)

    def images(flat):
        full = [-1, *shape] if isinstance(shape, list) else tf.concat([[-1], shape], 0)
        return tf.cast(tf.reshape(flat, full), dtype)

    def logits_of(flat):
        return tf.cast(logits_fn(images(flat)), tf.float32)

    def boundary(x1):
        """g = z_t - z_y at x1 and its gradient (the hyperplane of Sec. 3.1, targeted)."""
        with tf.GradientTape() as tape:
            tape.watch(x1)
            logits = logits_of(x1)
            picked = tf.gather(logits, pair, batch_dims=1)
            g = picked[:, 1] - picked[:, 0]
        grad = tape.gradient(g, x1, unconnected_gradients=tf.UnconnectedGradients.ZERO)
        return g, tf.ensure_shape(grad, x1.shape)

    def step(x1, best, best_norm):
        g, w = boundary(x1)
        # The same hyperplane seen from x_orig: its value there is g + <w, x0 - x1>. Both
        # projections in one batch (one sort).
        value0 = g + tf.reduce_sum(w * (x0 - x1), axis=1)
        both = project_onto_hyperplane_in_box(
            tf.concat([x1, x0], 0), tf.concat([w, w], 0), tf.concat([g, value0], 0), norm, clip_min, clip_max
        )
        delta, delta0 = tf.split(both, 2, axis=0)
        size = tf.maximum(_flat_norm(delta, norm), NORM_FLOOR)
        size0 = tf.maximum(_flat_norm(delta0, norm), NORM_FLOOR)
        alpha = tf.minimum(size / (size + size0), alpha_max)[:, None]  # Eq. (7)
        x1 = (1.0 - alpha) * (x1 + eta * delta) + alpha * (x0 + eta * delta0)  # Eq. (6)
        x1 = tf.clip_by_value(x1, clip_min, clip_max)
        fooled = _common.predicted_labels(logits_of(x1)) != labels
        distance = _flat_norm(x1 - x0, norm)
        better = tf.logical_and(fooled, distance < best_norm)
        best = tf.where(better[:, None], x1, best)
        best_norm = tf.where(better, distance, best_norm)
        x1 = tf.where(fooled[:, None], x0 + beta * (x1 - x0), x1)  # the backward step
        return x1, best, best_norm

    best_norm = tf.fill(tf.shape(labels), tf.constant(NOT_FOUND, tf.float32))
    _, _, best, best_norm = tf.while_loop(
        lambda i, *_: i < steps,
        lambda i, x1, best, best_norm: (i + 1, *step(x1, best, best_norm)),
        (tf.constant(0), x0, x0, best_norm),
        maximum_iterations=steps,
    )
    return best, best_norm


def fab_targeted(
    model_fn,
    x,
    y=None,
    *,
    eps,
    steps=DEFAULT_ITERATIONS,
    norm="linf",
    clip_min=0.0,
    clip_max=1.0,
    options: FabOptions | None = None,
):
    """FAB-T (Croce & Hein 2020, arXiv:1907.02044, Algorithm 1, targeted as in AutoAttack).

    For each target t among the classes ranked 2nd to (n_target_classes + 1)-th by the clean
    logits, and for each example not yet broken, `steps` iterations from x_orig of

        delta  = proj_p(x_i; pi ∩ C) - x_i,   delta0 = proj_p(x_orig; pi ∩ C) - x_orig,
        alpha  = min(||delta|| / (||delta|| + ||delta0||), alpha_max)          (Eq. (7))
        x_i+1  = clip((1 - alpha)(x_i + eta delta) + alpha (x_orig + eta delta0))  (Eq. (6))

    where pi is the hyperplane g(x_i) + <grad g(x_i), u - x_i> = 0 of g = z_t - z_y (Sec.
    3.1; the projections are exact, `fab_projections`), and a misclassified x_i+1 is kept if
    it is the closest to x_orig so far and then pulled back to x_orig + beta (x_i+1 -
    x_orig) (Sec. 3.2). An example is broken when the closest misclassified point of a
    target lies within eps; it gets that point, and later targets skip it.

    Args:
      model_fn: images -> logits (see `as_logits_fn`).
      x: float [B, H, W, C] in [clip_min, clip_max].
      y: int [B] true labels; None uses the model's predictions on x. Examples the model
        already misclassifies are returned unchanged (AutoAttack attacks only the others).
      eps: the budget in `norm`, in the input scale.
      steps: iterations per target (>= 0).
      norm: 'linf' (or np.inf) or 'l2' (or 2).
      clip_min, clip_max: the input range (the box C).
      options: FabOptions (targets, alpha_max, eta, beta); None: AutoAttack's values.

    Returns:
      x_adv, float [B, H, W, C] like x, no gradient: a misclassified point within eps of x
      where one was found, x elsewhere.

    Raises:
      ValueError: steps < 0 or an unknown norm.
    """
    options = options or FabOptions()
    logits_fn = as_logits_fn(model_fn)
    norm = _common.normalize_norm(norm)
    if steps < 0:
        raise ValueError(f"steps must be >= 0, got {steps}")
    x = tf.convert_to_tensor(x)
    if not x.dtype.is_floating:
        x = tf.cast(x, tf.float32)
    if _common.is_empty_batch(x):
        return x
    clean_logits = logits_fn(x)
    clean_pred = _common.predicted_labels(clean_logits)
    labels = clean_pred if y is None else tf.cast(y, tf.int64)
    ranked = tf.argsort(clean_logits, axis=-1, direction="DESCENDING", stable=True)
    n_targets = tf.minimum(options.n_target_classes, tf.shape(clean_logits)[-1] - 1)
    # The static example shape when known: Keras layers need it after the reshapes.
    shape = x.shape[1:].as_list() if x.shape[1:].is_fully_defined() else tf.shape(x)[1:]
    flat = tf.reshape(tf.cast(x, tf.float32), [tf.shape(x)[0], -1])
    eps = tf.cast(eps, tf.float32)

    def attack_target(rank, robust, adv):
        # Only the examples no earlier target broke (each example's result depends on it
        # alone, so this changes no result, only the cost).
        todo = tf.where(robust)[:, 0]
        sub = tf.gather(flat, todo)
        best, best_norm = _fab_single_target(
            logits_fn,
            sub,
            tf.gather(labels, todo),
            tf.cast(tf.gather(ranked[:, rank], todo), tf.int64),
            steps=steps,
            norm=norm,
            clip_min=clip_min,
            clip_max=clip_max,
            options=options,
            shape=shape,
            dtype=x.dtype,
        )
        broken = best_norm <= eps
        index = tf.boolean_mask(todo, broken)[:, None]
        adv = tf.tensor_scatter_nd_update(adv, index, tf.boolean_mask(best, broken))
        robust = tf.tensor_scatter_nd_update(robust, index, tf.zeros_like(index[:, 0], tf.bool))
        return robust, adv

    def body(rank, robust, adv):
        # A batch of 0 never reaches the model: oneDNN's convolution gradients reject it.
        robust, adv = tf.cond(
            tf.reduce_any(robust), lambda: attack_target(rank, robust, adv), lambda: (robust, adv)
        )
        return rank + 1, robust, adv

    _, _, adv = tf.while_loop(
        lambda rank, *_: rank <= n_targets,
        body,
        (tf.constant(1), tf.equal(clean_pred, labels), flat),
    )
    return tf.stop_gradient(tf.cast(tf.reshape(adv, tf.shape(x)), x.dtype))


def _build(spec: AttackSpec, logits_fn, threat: Threat, options: FabOptions):
    def run(x, labels, seed):
        del seed  # FAB-T is deterministic
        return fab_targeted(
            logits_fn,
            x,
            labels,
            eps=threat.eps,
            steps=spec.steps,
            norm=spec.norm,
            clip_min=threat.clip_min,
            clip_max=threat.clip_max,
            options=options,
        )

    return run


# `fab_t`, `fab100_t`, `fab_l2_t`: the objective slot `t` says "targeted over the runner-up
# classes" (the targets are chosen by the attack, not by `_ll` / `_rand`).
FAMILY = AttackFamily(
    name="fab",
    build=_build,
    multi_step=True,
    losses=("t",),
    norms=("linf", "l2"),
    targetable=False,
    default_rand_init=False,
    options=FabOptions,
    default_steps=DEFAULT_ITERATIONS,
)
