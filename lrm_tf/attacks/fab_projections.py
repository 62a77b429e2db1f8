"""Exact minimum-norm projections onto a hyperplane intersected with a box, batched.

FAB's step (Croce & Hein 2020, "Minimally distorted adversarial examples with a fast
adaptive boundary attack", arXiv:1907.02044, Sec. 3.1, Eq. (5)) needs, for a point p of the
box C = [lower, upper]^d and the linearised decision hyperplane pi, the projection

    proj_p(p; pi ∩ C) = argmin_{z in C} ||z - p||_p  subject to  <w, z - p> + v = 0,

where v is the value at p of the hyperplane's linear function (pi's value at z is
v + <w, z - p>). The paper shows it can be computed exactly in O(d log d) (Sec. 3.1,
Proposition 3.1 and the algorithms of its appendix); this module does it for p = inf and
p = 2 with one formulation for both.

Write the step as delta = z - p and orient the problem so that the constraint reads
<w', delta> = -|v| with w' = sign(v) w. Every coordinate then moves against sign(w'_i), at
most by its room c_i (p_i - lower when w'_i > 0, upper - p_i when w'_i < 0). For a
multiplier tau >= 0 the minimisers are

    L-inf: |delta_i| = min(tau, c_i)            (KKT of min t s.t. |delta_i| <= t),
    L2:    |delta_i| = min(tau |w'_i|, c_i)     (KKT of min ||delta||^2 / 2),

and the progress f(tau) = sum_i |w'_i| |delta_i| = sum_i a_i min(tau, r_i) is piecewise
linear, concave and non-decreasing, with breakpoints r_i (L-inf: r_i = c_i, a_i = |w'_i|;
L2: r_i = c_i / |w'_i|, a_i = w'_i^2). Sorting the breakpoints once gives f at every
breakpoint by cumulative sums; the segment where f crosses |v| gives tau in closed form.
When no point of the box reaches the hyperplane (f(inf) < |v|), the step is the box corner
that gets closest to it, with the smallest norm among those (every active coordinate at
its room), which is what FAB uses as its step towards the boundary in that case.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

NORMS = ("linf", "l2")


def _segment_multiplier(breaks, weights, saturated, target):
    """The tau with f(tau) = target, f(tau) = sum_i a_i min(tau, r_i) (see the module doc).

    Args:
      breaks: float [N, d], the breakpoints r_i >= 0.
      weights: float [N, d], the slopes a_i >= 0.
      saturated: float [N, d], a_i * r_i (given separately: for L2 it is |w_i| c_i, finite
        even when r_i is huge).
      target: float [N], >= 0.

    Returns:
      float [N]: tau, or the largest breakpoint when f never reaches the target.
    """
    order = tf.argsort(breaks, axis=1, stable=True)
    r = tf.gather(breaks, order, batch_dims=1)
    a = tf.gather(weights, order, batch_dims=1)
    s = tf.gather(saturated, order, batch_dims=1)
    saturated_before = tf.cumsum(s, axis=1, exclusive=True)  # sum_{j<k} a_j r_j
    active_from = tf.cumsum(a, axis=1, reverse=True)  # sum_{j>=k} a_j
    progress = saturated_before + r * active_from  # f(r_k)
    below = tf.reduce_sum(tf.cast(progress < target[:, None], tf.int32), axis=1)  # m
    d = tf.shape(r)[1]
    k = tf.minimum(below, d - 1)

    def at_k(t):
        return tf.gather(t, k[:, None], batch_dims=1)[:, 0]

    # On the segment [r_{m-1}, r_m] coordinates j < m are saturated, j >= m are active.
    tau = tf.math.divide_no_nan(target - at_k(saturated_before), at_k(active_from))
    previous = tf.where(k > 0, tf.gather(r, tf.maximum(k - 1, 0)[:, None], batch_dims=1)[:, 0], 0.0)
    tau = tf.clip_by_value(tau, previous, at_k(r))
    return tf.where(below >= d, r[:, -1], tau)


def project_onto_hyperplane_in_box(point, w, value, norm, lower=0.0, upper=1.0):
    """The exact minimum-Lp step from `point` onto the hyperplane within the box.

    Solves, for each row n (FAB paper Eq. (5), the projection proj_p(x; pi ∩ C)),

        min ||delta||_p  s.t.  value_n + <w_n, delta> = 0,  lower <= point_n + delta <= upper,

    exactly (sort plus cumulative sums: O(d log d); see the module docstring). When the
    hyperplane does not meet the box, it returns the corner step that makes the most
    progress towards it, with the smallest norm among those.

    Args:
      point: float [N, d], in [lower, upper].
      w: float [N, d], the hyperplane's normal (FAB: the gradient of z_t - z_y).
      value: float [N], the hyperplane's linear function at `point` (FAB: z_t - z_y at the
        linearisation point plus <w, point - that point>).
      norm: 'linf' or 'l2'.
      lower, upper: the box, scalars or broadcastable to [N, d].

    Returns:
      delta, float [N, d] like point: point + delta lies in the box and, when the
      hyperplane meets the box, on the hyperplane, with the least ||delta||_p. For 'linf'
      the minimiser is not unique: coordinates with w_i = 0 do not move.

    Raises:
      ValueError: an unknown norm.
    """
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; expected one of {', '.join(NORMS)}")
    point = tf.convert_to_tensor(point)
    w = tf.cast(w, point.dtype)
    value = tf.cast(value, point.dtype)
    oriented = w * tf.sign(value)[:, None]  # then the constraint is <oriented, delta> = -|v|
    room = tf.where(oriented > 0, point - lower, upper - point)
    room = tf.maximum(room, 0.0)
    magnitude = tf.abs(oriented)
    saturated = magnitude * room
    if norm == "linf":
        tau = _segment_multiplier(room, magnitude, saturated, tf.abs(value))
        step = tf.minimum(tau[:, None], room)
    else:
        # Below the smallest normal number c_i / |w_i| could overflow; such a coordinate's
        # contribution |w_i| c_i is below 1e-38 anyway.
        usable = magnitude >= np.finfo(point.dtype.as_numpy_dtype).tiny
        breaks = tf.where(usable, room / tf.where(usable, magnitude, 1.0), 0.0)
        weights = tf.where(usable, tf.square(magnitude), 0.0)
        saturated = tf.where(usable, saturated, 0.0)
        tau = _segment_multiplier(breaks, weights, saturated, tf.abs(value))
        step = tf.where(usable, tf.minimum(tau[:, None] * magnitude, room), 0.0)
    return -tf.sign(oriented) * step
