"""One run of Auto-PGD (Croce & Hein 2020, arXiv:2003.01690, sec. 3, Algorithm 1): the step
schedule, the momentum update and the best-point bookkeeping, as one `tf.while_loop`.

`lrm_tf.attacks.apgd` builds the attacks (losses, restarts, targets, names) on top of `run`.
Where the paper and the reference code (fra31/auto-attack, which produced the published
numbers) differ, the code's behaviour is followed and said so here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import tensorflow as tf

from lrm_tf.attacks import _common

# The reference adds this to every per-example norm it divides by (directions, projections).
NORM_EPSILON = 1e-12

# (loss [B] float32, misclassified [B] bool, gradient like x) at a point [B, ...].
Evaluate = Callable[[tf.Tensor], tuple[tf.Tensor, tf.Tensor, tf.Tensor]]


def schedule(steps: int) -> tuple[int, int, int]:
    """The reference's countdown: (first period, shortest period, decrement), in iterations.

    Sec. 3.2: p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06); the
    periods are therefore 0.22 N, then 0.03 N shorter each time, at least 0.06 N, each
    truncated to an integer (and at least 1) as the reference does.
    """
    return max(int(0.22 * steps), 1), max(int(0.06 * steps), 1), max(int(0.03 * steps), 1)


def checkpoints(steps: int) -> list[int]:
    """The iterations w_j after which APGD may halve its step (Croce & Hein 2020, sec. 3.2).

    Args:
      steps: N_iter (>= 1).

    Returns:
      The cumulative iteration counts at the checks, e.g. [22, 41, 57, 70, 80, 87, 93, 99]
      for 100 iterations, [220, 410, ..., 990] for 1000.
    """
    period, shortest, decrement = schedule(steps)
    points, done = [], 0
    while done + period <= steps:
        done += period
        points.append(done)
        period = max(period - decrement, shortest)
    return points


def _norm(t):
    return tf.sqrt(tf.reduce_sum(tf.square(t), list(range(1, len(t.shape))), keepdims=True))


def _linf_normalize(t):
    return t / (tf.reduce_max(tf.abs(t), list(range(1, len(t.shape))), keepdims=True) + NORM_EPSILON)


def random_start(x, norm: str, eps, seed, clip_min, clip_max):
    """The reference's random start, drawn per example (keyed by `seed` and its fingerprint).

    L-inf: x + eps * t / ||t||_inf with t ~ U[-1, 1]^d (the largest coordinate on the
    boundary); L2: x + eps * t / ||t||_2 with t ~ N(0, I) (on the sphere); then clipped to
    the input range.
    """
    keys = _common.example_keys(x)
    shape = tf.shape(x)[1:]
    if norm == "linf":
        t = _linf_normalize(_common.per_example_uniform(seed, keys, shape, -1.0, 1.0, x.dtype))
    else:
        t = _common.per_example_normal(seed, keys, shape, x.dtype)
        t = t / (_norm(t) + NORM_EPSILON)
    return _common.clip_to_range(x + tf.cast(eps, x.dtype) * tf.reshape(t, tf.shape(x)), clip_min, clip_max)


def project(point, x, norm: str, eps, clip_min, clip_max):
    """P_S of Algorithm 1 as the reference computes it: into the eps ball around x, then into
    the input range (for L2 a rescaling then a clip: not the exact projection onto the
    intersection)."""
    if norm == "linf":
        point = tf.clip_by_value(point, x - eps, x + eps)
    else:
        delta = point - x
        size = _norm(delta)
        point = x + delta / (size + NORM_EPSILON) * tf.minimum(tf.cast(eps, x.dtype), size)
    return _common.clip_to_range(point, clip_min, clip_max)


def direction(grad, norm: str):
    """The steepest-ascent direction of unit size: sign(g) for L-inf, g / ||g||_2 for L2."""
    return tf.sign(grad) if norm == "linf" else grad / (_norm(grad) + NORM_EPSILON)


class RunResult(NamedTuple):
    """What one APGD run returns, per example."""

    x_best: tf.Tensor  # the point of the highest loss seen (x_max of Algorithm 1)
    loss_best: tf.Tensor  # that loss, float32 [B]
    fooled: tf.Tensor  # bool [B]: some iterate (the start included) was misclassified
    x_fooled: tf.Tensor  # the last misclassified iterate (the start where none was)
    step: tf.Tensor  # the final step size eta, [B]


def run(
    evaluate: Evaluate,
    x,
    start,
    *,
    norm: str,
    eps,
    steps: int,
    rho: float = 0.75,
    momentum: float = 0.75,
    initial_step: float = 2.0,
    clip_min=0.0,
    clip_max=1.0,
) -> RunResult:
    """`steps` iterations of APGD from `start` (Croce & Hein 2020, Algorithm 1).

    Update (eq. 2), with eta the per-example step and alpha = `momentum` (1 at k = 0):
      z = P_S(x_k + eta * dir(grad f(x_k))),
      x_{k+1} = P_S(x_k + alpha (z - x_k) + (1 - alpha)(x_k - x_{k-1})).
    At each checkpoint w_j (`checkpoints`) the step of an example is halved, and the example
    restarts from its best point x_max with the gradient there, if
      condition 1: #{i in the period : f(x_{i+1}) > f(x_i)} <= rho * (w_j - w_{j-1}), or
      condition 2: its step was not halved at w_{j-1} and f_max has not grown since.
    As the reference: the count of condition 1 uses <= (the paper: <), its first comparison
    is f(x_1) > 0 (the reference compares with an unfilled entry; the paper with f(x_0)),
    condition 2 is off at the first checkpoint, and after a halving the momentum term is
    x_max minus the iterate before the last update.

    Args:
      evaluate: point [B, ...] -> (loss float32 [B], misclassified bool [B], gradient of the
        summed loss, like the point); called once at the start and once per iteration.
      x: the clean examples [B, ...]; start: x_0, inside S.
      norm: 'linf' or 'l2'; eps: the radius; steps: N_iter (>= 0).
      rho: the fraction of condition 1; momentum: alpha; initial_step: eta_0 / eps (2).
      clip_min, clip_max: the input range.

    Returns:
      A `RunResult`.
    """
    dtype = x.dtype
    period, shortest, decrement = schedule(max(steps, 1))
    loss, wrong, grad = evaluate(start)
    step = tf.fill(tf.shape(x)[:1], tf.cast(initial_step * eps, dtype))
    zeros = tf.zeros_like(loss)

    def mask(m, like):
        return _common.broadcast_mask(m, like)

    def body(i, x_adv, x_prev, grad, best, loss_best, fooled, x_fooled, step, state):
        k, counter, increases, prev_loss, best_at_check, halved_at_check = state
        a = tf.cast(tf.where(i > 0, momentum, 1.0), dtype)
        eta = mask(step, x_adv)
        z = project(x_adv + eta * direction(grad, norm), x, norm, eps, clip_min, clip_max)
        new = project(x_adv + a * (z - x_adv) + (1 - a) * (x_adv - x_prev), x, norm, eps, clip_min, clip_max)
        loss, wrong, grad = evaluate(new)
        x_fooled = tf.where(mask(wrong, new), new, x_fooled)
        fooled = tf.logical_or(fooled, wrong)
        better = loss > loss_best
        best_point, best_grad = best
        best_point = tf.where(mask(better, new), new, best_point)
        best_grad = tf.where(mask(better, grad), grad, best_grad)
        loss_best = tf.where(better, loss, loss_best)
        increases += tf.cast(loss > prev_loss, increases.dtype)
        counter += 1
        check = tf.equal(counter, k)
        too_few = increases <= rho * tf.cast(k, increases.dtype)  # condition 1
        stalled = tf.logical_and(tf.logical_not(halved_at_check), best_at_check >= loss_best)  # condition 2
        halve = tf.logical_and(check, tf.logical_or(too_few, stalled))
        step = tf.where(halve, step / 2, step)
        new = tf.where(mask(halve, new), best_point, new)
        grad = tf.where(mask(halve, grad), best_grad, grad)
        state = (
            tf.where(check, tf.maximum(k - decrement, shortest), k),
            tf.where(check, 0, counter),
            tf.where(check, zeros, increases),
            loss,
            tf.where(check, loss_best, best_at_check),
            tf.where(check, tf.logical_or(too_few, stalled), halved_at_check),
        )
        return i + 1, new, x_adv, grad, (best_point, best_grad), loss_best, fooled, x_fooled, step, state

    state = (tf.constant(period), tf.constant(0), zeros, zeros, loss, tf.ones_like(wrong))
    loop_vars = (tf.constant(0), start, start, grad, (start, grad), loss, wrong, start, step, state)
    out = tf.while_loop(lambda i, *_: i < steps, body, loop_vars, maximum_iterations=steps)
    _, _, _, _, (best, _), loss_best, fooled, x_fooled, step, _ = out
    return RunResult(best, loss_best, fooled, x_fooled, step)
