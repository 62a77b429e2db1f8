"""Square Attack: score-based random search on the margin, L-inf and L2, batched, in-graph.

Andriushchenko, Croce, Flammarion & Hein 2020, "Square Attack: a query-efficient black-box
adversarial attack via random search" (arXiv:1912.00049), as AutoAttack runs it (Croce & Hein
2020, `square.py` of fra31/auto-attack; ../shared/AUTOATTACK.md, b.4):

* loss (minimised): the margin z_y - max_{k != y} z_k (Eq. (1) with the margin loss);
* L-inf (Alg. 1 with Alg. 2's sampling): start at vertical stripes clip(x + eps * s), one sign
  per channel and column; each iteration puts a square window of side h (below) at a random
  corner, adds 2 eps times one random sign per channel inside it and projects back onto the
  eps ball and the input range (each window pixel becomes x +- eps);
* L2 (Alg. 3): start from a grid of "pseudo-Gaussian" eta patterns (side H // 5) with random
  signs, scaled to norm eps; each iteration moves the mass of a second window into a new eta
  pattern in the first window (odd side >= 3) and rescales the whole perturbation to eps;
* acceptance: a candidate replaces the current point only if its margin is strictly lower;
  an example stops once its margin is <= 0 (misclassified) and the loop ends when all stop;
* the schedule of p (the fraction of pixels a window covers, p_init = 0.8): halved after
  iterations 10, 50, 200, 500, 1000, 2000, 4000, 6000 and 8000 (`p_schedule`). AutoAttack
  (`resc_schedule=False`, the default here) uses these breakpoints as they stand, so 5000
  queries end at p_init / 128; `SquareOptions(rescale_schedule=True)` scales them by
  n_queries / 10000 as the paper's code and torchattacks do;
* queries: the start is 1 query, each iteration 1 more while the example is correctly
  classified; the clean pass that picks the points to attack is not counted (as in AutoAttack),
  and an example misclassified at the clean input is returned unchanged with 0 queries.

Deviations, on purpose: AutoAttack's PyTorch code draws one window corner, sign vector and eta
transposition per iteration, shared by the batch; here each example draws its own from the
per-example keyed streams of `_common` (as the paper's own code samples per image), so its
result does not depend on its batch or replica split; the draws of `DRAW_CHUNK` iterations are
made at once. An example never broken is returned at its lowest-margin point (AutoAttack: the
clean input; both are correctly classified). Windows are capped at the image's shorter side
(odd for L2). As in both references, a corner is drawn from [0, H - h) (0 when h = H), and a
window that changes nothing still costs its query. Untargeted only.
Only forward passes are made, on the examples still active (gathered), never a gradient.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import tensorflow as tf

from lrm_tf.attacks import _common
from lrm_tf.attacks.adapters import as_logits_fn
from lrm_tf.attacks.restarts import worst_case_over_restarts
from lrm_tf.attacks.spec import AttackFamily, AttackSpec
from lrm_tf.config import Config, Threat
from lrm_tf.config.setting import setting

# Purpose tags of the keyed streams (see `_common`), distinct from `_common.STREAM_*`.
STREAM_SQUARE_INIT = 31
STREAM_SQUARE_STEPS = 32
DRAW_CHUNK = 64  # iterations whose per-example draws are made at once
P_BREAKPOINTS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)
SCHEDULE_BUDGET = 10000  # the query budget the breakpoints were set for
TINY = 1e-12  # AutoAttack's guard in the L2 normalisations


def _float64(value):
    """A float64 tensor; a python float converts exactly (not through float32)."""
    return tf.cast(tf.convert_to_tensor(value, dtype_hint=tf.float64), tf.float64)


def p_schedule(iteration, n_queries, p_init=0.8, rescale=False):
    """p at a 0-based iteration: p_init halved once per breakpoint the iteration exceeds.

    Args:
      iteration: int (python or tensor), 0-based; n_queries: the iteration budget.
      p_init: p before the first breakpoint.
      rescale: map the iteration to floor(iteration / n_queries * 10000) first (the paper's
        code); False uses the breakpoints as absolute iteration numbers (AutoAttack).

    Returns:
      float64 scalar tensor: p_init / 2^k, k in [0, 9].
    """
    it = tf.cast(iteration, tf.float64)
    if rescale:
        it = tf.floor(it / tf.cast(n_queries, tf.float64) * SCHEDULE_BUDGET)
    halvings = tf.reduce_sum(tf.cast(it > tf.constant(P_BREAKPOINTS, tf.float64), tf.float64))
    return _float64(p_init) / tf.pow(tf.constant(2.0, tf.float64), halvings)


def window_side(p, height, width, channels, norm="linf"):
    """The side of the square window: round(sqrt(p * n_features / channels)).

    At least 1 (L-inf), or odd and at least 3 (L2); at most the shorter image side (for L2 the
    largest odd number not above it). Python's and TensorFlow's round both round half to even.

    Args:
      p: the fraction of pixels (float); height, width, channels: python ints; norm: 'linf'|'l2'.

    Returns:
      int32 scalar tensor.
    """
    features = tf.constant(float(height * width * channels), tf.float64)
    side = tf.cast(tf.round(tf.sqrt(_float64(p) * features / channels)), tf.int32)
    shorter = min(height, width)
    if norm == "linf":
        return tf.clip_by_value(side, 1, shorter)
    side = tf.maximum(side, 3)
    side = side + 1 - side % 2
    return tf.minimum(side, shorter - 1 + shorter % 2)


def square_margin(labels, logits):
    """z_y - max_{k != y} z_k per example, in at least float32 (> 0: correctly classified).

    Args:
      labels: int [B]; logits: float [B, classes].

    Returns:
      float32 (or float64) [B].
    """
    if logits.dtype in (tf.float16, tf.bfloat16):
        logits = tf.cast(logits, tf.float32)
    is_label = tf.one_hot(labels, tf.shape(logits)[-1], on_value=True, off_value=False)
    lowest = tf.constant(-np.inf, logits.dtype)
    label_logit = tf.reduce_max(tf.where(is_label, logits, lowest), axis=-1)
    return label_logit - tf.reduce_max(tf.where(is_label, lowest, logits), axis=-1)


def eta_pattern(side, size):
    """The L2 attack's eta(s) (Alg. 3): two stacked rectangles of opposite sign, each a sum of
    concentric squares weighted 1/(n+1)^2 and scaled to unit norm, the whole of unit norm.

    Args:
      side: int scalar s (1 <= s <= size); size: python int.

    Returns:
      float32 [size, size]: eta(s) in the top-left s x s corner, zeros elsewhere.
    """
    s = tf.cast(side, tf.int32)
    rows, cols = tf.range(size)[:, None], tf.range(size)[None, :]
    half = s // 2
    top = rows < half
    centre = tf.where(top, half // 2, half + (s - half) // 2)
    ring = tf.maximum(tf.abs(rows - centre), tf.abs(cols - s // 2))
    # sum_{m=ring+1}^{half+1} 1/m^2 through the partial sums of 1/m^2.
    partial = tf.constant(np.concatenate([[0.0], np.cumsum(1.0 / np.arange(1, size + 2) ** 2)]), tf.float32)
    value = tf.gather(partial, half + 1) - tf.gather(partial, tf.minimum(ring, half + 1))
    value = tf.where((rows < s) & (cols < s), value, 0.0)
    upper = tf.where(top, value, 0.0)
    lower = value - upper
    pattern = tf.math.divide_no_nan(upper, tf.norm(upper)) - tf.math.divide_no_nan(lower, tf.norm(lower))
    return pattern / tf.norm(pattern)


def _corner(u, side, length):
    """A corner uniform in [0, length - side) (0 when side == length), from u in [0, 1)."""
    positions = tf.maximum(length - side, 1)
    return tf.minimum(tf.cast(u * tf.cast(positions, u.dtype), tf.int32), positions - 1)


def _window(u_row, u_col, side, height, width):
    """Per-example square windows: (inside [B, H, W] bool, local rows [B, H], local cols [B, W])."""
    rows = tf.range(height)[None, :] - _corner(u_row, side, height)[:, None]
    cols = tf.range(width)[None, :] - _corner(u_col, side, width)[:, None]
    inside = ((rows >= 0) & (rows < side))[:, :, None] & ((cols >= 0) & (cols < side))[:, None, :]
    return inside, rows, cols


def _place(pattern, size, rows, cols, inside, transpose):
    """pattern[rows, cols] (pattern[cols, rows] where transposed) inside the window, else 0."""
    first, second = tf.where(transpose, cols, rows), tf.where(transpose, rows, cols)
    index = tf.clip_by_value(first, 0, size - 1) * size + tf.clip_by_value(second, 0, size - 1)
    return tf.where(inside, tf.gather(tf.reshape(pattern, [-1]), index), 0.0)


def _signs(u):
    return tf.where(u < 0.5, -1.0, 1.0)


def _norm(t, axes=(1, 2, 3)):
    return tf.sqrt(tf.reduce_sum(tf.square(t), axis=list(axes), keepdims=True))


def _l2_grid(height, width):
    """The L2 start's grid of eta blocks (side H // 5, offset (H - 5 side) // 2 on both axes):
    (side, block id [H, W] (-1 outside), local row [H, W], local col [H, W], block count)."""
    side = height // 5
    start = (height - 5 * side) // 2
    along_h = [start + k * side for k in range(height // side) if start + (k + 1) * side <= height]
    along_w = [start + k * side for k in range(width // side) if start + (k + 1) * side <= width]
    block = -np.ones((height, width), np.int32)
    local_r, local_c = np.zeros_like(block), np.zeros_like(block)
    for a, top in enumerate(along_h):
        for b, left in enumerate(along_w):
            block[top : top + side, left : left + side] = a * len(along_w) + b
            local_r[top : top + side, left : left + side] = np.arange(side)[:, None]
            local_c[top : top + side, left : left + side] = np.arange(side)[None, :]
    return side, block, local_r, local_c, len(along_h) * len(along_w)


def square_search(
    model_fn,
    x,
    y=None,
    *,
    eps,
    n_queries=5000,
    norm="linf",
    p_init=0.8,
    rescale_schedule=False,
    seed=None,
    clip_min=0.0,
    clip_max=1.0,
):
    """One run of the Square Attack (Andriushchenko et al. 2020, Alg. 1-3), untargeted.

    Args:
      model_fn: images -> logits (see `as_logits_fn`); only called, never differentiated.
      x: float [B, H, W, C] in [clip_min, clip_max] ([0, 1] by default), static H, W, C.
      y: int [B] true labels; None: the model's predictions.
      eps: the budget (L-inf or L2), in the input scale.
      n_queries: iterations after the start (the start is one more query).
      norm: 'linf' (np.inf) or 'l2' (2).
      p_init, rescale_schedule: see `p_schedule`.
      seed: int [2] tensor (None: (0, 0)); the draws are keyed per example.
      clip_min, clip_max: the input range.

    Returns:
      (x_adv float [B, H, W, C] like x, margin float32 [B] at x_adv (the clean margin for an
      example misclassified at x), queries int32 [B]). No gradient.

    Raises:
      ValueError: an unknown norm, n_queries < 0, p_init outside (0, 1], an unknown example
        shape, or an L2 image shorter than 5 pixels.
    """
    norm = _common.normalize_norm(norm)
    if n_queries < 0 or not 0 < p_init <= 1:
        raise ValueError(f"need n_queries >= 0 and p_init in (0, 1], got {n_queries}, {p_init}")
    logits_fn = as_logits_fn(model_fn)
    x, y = _common.prepare_inputs(logits_fn, x, y, False)
    if not x.shape[1:].is_fully_defined() or x.shape.rank != 4:
        raise ValueError(f"Square needs images [B, H, W, C] of a known H, W, C, got {x.shape}")
    height, width, channels = x.shape[1:]
    if norm == "l2" and min(height, width) < 5:
        raise ValueError(f"the L2 Square Attack needs images of at least 5 x 5 pixels, got {x.shape}")
    labels = tf.cast(y, tf.int64)
    seed, keys = _common.as_seed(seed), _common.example_keys(x)
    eps_t = tf.cast(eps, x.dtype)
    size = min(height, width)
    per_iteration = (2 if norm == "linf" else 5) + channels  # corner(s), [flip,] channel signs
    u_shape = [x.shape[0], DRAW_CHUNK, per_iteration]

    def margins(points, active):
        """Margins of the active examples (one model call on them only), +inf for the others."""
        index, unknown = tf.where(active), tf.zeros_like(active, tf.float32) + np.inf
        found = lambda: square_margin(tf.gather_nd(labels, index), logits_fn(tf.gather_nd(points, index)))  # noqa: E731
        update = lambda: tf.tensor_scatter_nd_update(unknown, index, tf.cast(found(), tf.float32))  # noqa: E731
        return tf.cond(tf.reduce_any(active), update, lambda: unknown)

    def project(points):
        if norm == "linf":
            points = tf.clip_by_value(points, x - eps_t, x + eps_t)
        return tf.ensure_shape(tf.clip_by_value(points, clip_min, clip_max), x.shape)

    def scale_l2(delta):
        return project(x + eps_t * delta / (TINY + _norm(delta)))

    def start(stream):
        if norm == "linf":
            u = _common.per_example_uniform(stream, keys, [width * channels], 0.0, 1.0)
            stripes = tf.reshape(_signs(u), [-1, 1, width, channels])
            return project(x + eps_t * tf.cast(stripes, x.dtype))
        side, block, local_r, local_c, blocks = _l2_grid(height, width)
        u = _common.per_example_uniform(stream, keys, [blocks * (1 + channels)], 0.0, 1.0)
        flips = tf.gather(u[:, :blocks] >= 0.5, np.maximum(block, 0), axis=1)  # [B, H, W]
        signs = tf.gather(
            tf.reshape(_signs(u[:, blocks:]), [-1, blocks, channels]), np.maximum(block, 0), axis=1
        )
        eta = _place(eta_pattern(side, size), size, local_r, local_c, block >= 0, flips)
        return scale_l2(tf.cast(eta[..., None] * signs, x.dtype))

    def candidate(x_best, u, side):
        inside, rows, cols = _window(u[:, 0], u[:, 1], side, height, width)
        if norm == "linf":
            step = tf.where(inside[..., None], 2.0 * _signs(u[:, 2:])[:, None, None, :], 0.0)
            return project(x_best + eps_t * tf.cast(step, x.dtype))
        other, _, _ = _window(u[:, 2], u[:, 3], side, height, width)
        delta = x_best - x
        old = tf.where(inside[..., None], delta, 0.0)
        flips = (u[:, 4] >= 0.5)[:, None, None]
        eta = _place(eta_pattern(side, size), size, rows[:, :, None], cols[:, None, :], inside, flips)
        new = tf.cast(eta[..., None] * _signs(u[:, 5:])[:, None, None, :], x.dtype)
        new += old / (TINY + _norm(old, (1, 2)))
        union = tf.where((inside | other)[..., None], delta, 0.0)
        room = tf.maximum(tf.square(eps_t) - tf.square(_norm(delta)), 0.0) / channels
        new = new / (TINY + _norm(new, (1, 2))) * tf.sqrt(room + tf.square(_norm(union)))
        delta = tf.where(inside[..., None], new, tf.where(other[..., None], tf.zeros_like(delta), delta))
        return scale_l2(delta)

    def draws(stream, chunk):  # the uniforms of DRAW_CHUNK iterations, [B, DRAW_CHUNK, per_iteration]
        u = _common.per_example_uniform(
            _common.fold_seed(stream, chunk), keys, [DRAW_CHUNK * per_iteration], 0, 1
        )
        return tf.ensure_shape(tf.reshape(u, [-1, DRAW_CHUNK, per_iteration]), u_shape)

    clean_logits = logits_fn(x)
    clean_margin = tf.cast(square_margin(labels, clean_logits), tf.float32)
    correct = tf.equal(_common.predicted_labels(clean_logits), labels)
    x_start = start(_common.fold_seed(seed, STREAM_SQUARE_INIT))
    x_best = tf.where(_common.broadcast_mask(correct, x), x_start, x)
    margin = tf.where(correct, margins(x_start, correct), clean_margin)
    queries = tf.cast(correct, tf.int32)
    stream = _common.fold_seed(seed, STREAM_SQUARE_STEPS)

    def body(i, x_best, margin, queries, u):
        u = tf.cond(tf.equal(i % DRAW_CHUNK, 0), lambda: draws(stream, i // DRAW_CHUNK), lambda: u)
        active = margin > 0
        side = window_side(p_schedule(i, n_queries, p_init, rescale_schedule), height, width, channels, norm)
        x_new = candidate(x_best, tf.gather(u, i % DRAW_CHUNK, axis=1), side)
        new_margin = margins(x_new, active)
        accept = active & (new_margin < margin)  # strict: ties keep the current point
        x_best = tf.where(_common.broadcast_mask(accept, x_best), x_new, x_best)
        margin = tf.where(accept, new_margin, margin)
        return i + 1, x_best, margin, queries + tf.cast(active, tf.int32), u

    _, x_best, margin, queries, _ = tf.while_loop(
        lambda i, x_best, margin, *_: tf.logical_and(i < n_queries, tf.reduce_any(margin > 0)),
        body,
        (tf.constant(0), x_best, margin, queries, tf.zeros([tf.shape(x)[0], DRAW_CHUNK, per_iteration])),
        maximum_iterations=n_queries,
    )
    return tf.stop_gradient(x_best), margin, queries


def square_attack(model_fn, x, y=None, *, eps, n_queries=5000, norm="linf", restarts=1, seed=None, **kwargs):
    """The Square Attack with restarts: the worst case per example over `restarts` runs of
    `square_search` (restart r uses `restart_seed(seed, r)`; AutoAttack runs 1).

    Args:
      model_fn, x, y, eps, n_queries, norm, seed: as for `square_search`.
      restarts: >= 1.
      **kwargs: p_init, rescale_schedule, clip_min, clip_max (see `square_search`).

    Returns:
      x_adv, float [B, H, W, C] like x, within eps of x and in the range, no gradient.

    Raises:
      ValueError: as `square_search`; restarts < 1.
    """
    logits_fn = as_logits_fn(model_fn)
    x, y = _common.prepare_inputs(logits_fn, x, y, False)
    if _common.is_empty_batch(x):
        return x
    labels = tf.cast(y, tf.int64)

    def attack_once(attack_seed):
        return square_search(
            logits_fn, x, labels, eps=eps, n_queries=n_queries, norm=norm, seed=attack_seed, **kwargs
        )[0]

    objective = lambda lab, logits: -square_margin(lab, logits)  # noqa: E731
    return worst_case_over_restarts(
        attack_once, logits_fn, objective, x, labels, _common.as_seed(seed), restarts, False
    )


@dataclasses.dataclass(frozen=True)
class SquareOptions(Config):
    """Options of the Square family (Andriushchenko et al. 2020; AutoAttack's defaults)."""

    p_init: float = setting(
        0.8,
        "initial fraction of pixels a window covers (AutoAttack and the paper: 0.8)",
        check=lambda v: None if 0 < v <= 1 else "must be in (0, 1]",
        flag=False,
    )
    rescale_schedule: bool = setting(
        False,
        "scale the p-schedule breakpoints by queries / 10000 (the paper's code, torchattacks); "
        "False: absolute breakpoints, as AutoAttack (resc_schedule=False)",
        flag=False,
    )


def _build(spec: AttackSpec, logits_fn, threat: Threat, options: SquareOptions):
    settings = dict(eps=threat.eps, n_queries=spec.steps, norm=spec.norm, restarts=threat.restarts)
    settings.update(clip_min=threat.clip_min, clip_max=threat.clip_max, **dataclasses.asdict(options))
    return lambda x, labels, seed: square_attack(logits_fn, x, labels, seed=seed, **settings)


FAMILY = AttackFamily(
    name="square",
    build=_build,
    multi_step=True,
    fixed_loss="margin",
    norms=("linf", "l2"),
    default_rand_init=True,
    options=SquareOptions,
    default_steps=5000,
)
