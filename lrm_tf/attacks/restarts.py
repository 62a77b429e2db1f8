"""Random restarts with the worst case kept per example (Madry et al. 2018, sec. 3; Shafahi
et al. 2019 table 11).

Restart r runs the attack with `restart_seed(seed, r)`: restart 0 uses `seed` itself (so
`restarts=1` is the plain attack) and restart r >= 1 uses `seed` with r folded in. The
restarts run inside one `tf.while_loop`, so tracing R restarts builds one attack graph.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

from lrm_tf.attacks._common import RNG_ALG, broadcast_mask, predicted_labels
from lrm_tf.attacks.adapters import LogitsFn


def restart_seed(seed, restart):
    """The seed of restart number `restart`.

    Args:
      seed: int64 [2]; restart: python int or int tensor (0 gives `seed` itself).

    Returns:
      int64 [2].
    """
    restart = tf.cast(restart, tf.int64)
    folded = tf.random.experimental.stateless_fold_in(seed, restart, alg=RNG_ALG)
    return tf.where(tf.equal(restart, 0), seed, folded)


def attack_success(logits, labels, targeted: bool):
    """Untargeted: the prediction differs from `labels`. Targeted: it equals the target."""
    hit = tf.equal(predicted_labels(logits), tf.cast(labels, tf.int64))
    return hit if targeted else tf.logical_not(hit)


def worst_case_over_restarts(
    attack_once: Callable[[tf.Tensor], tf.Tensor],
    logits_fn: LogitsFn,
    objective_fn: Callable[[tf.Tensor, tf.Tensor], tf.Tensor],
    x,
    labels,
    seed,
    restarts: int,
    targeted: bool,
):
    """Runs `attack_once(seed_r)` for r < restarts and keeps the worst case per example.

    An example is broken if any restart breaks it; its result is the example of the first
    restart that broke it, else the one with the highest `objective_fn(labels, logits)` (the
    quantity the attack maximises).

    Args:
      attack_once: seed int64 [2] -> x_adv [B, ...].
      logits_fn: images -> logits, to score each restart.
      objective_fn: (labels, logits) -> float [B], the quantity the attack maximises.
      x: float [B, ...]; labels: int [B] (targets when targeted); seed: int64 [2].
      restarts: >= 1; targeted: success means reaching the target.

    Returns:
      x_adv [B, ...].

    Raises:
      ValueError: restarts < 1.
    """
    if restarts < 1:
        raise ValueError(f"restarts must be >= 1, got {restarts}")
    first = attack_once(restart_seed(seed, 0))
    if restarts == 1:
        return first

    def score(x_adv):
        logits = logits_fn(x_adv)
        return objective_fn(labels, logits), attack_success(logits, labels, targeted)

    first_objective, first_success = score(first)

    def body(restart, best, best_objective, best_success):
        candidate = attack_once(restart_seed(seed, restart))
        objective, success = score(candidate)
        # Once broken, an example keeps the restart that broke it.
        take = tf.logical_and(
            tf.logical_not(best_success), tf.logical_or(success, objective > best_objective)
        )
        best = tf.where(broadcast_mask(take, best), candidate, best)
        best_objective = tf.where(take, objective, best_objective)
        return restart + 1, best, best_objective, tf.logical_or(best_success, success)

    _, best, _, _ = tf.while_loop(
        lambda restart, *_: restart < restarts,
        body,
        (tf.constant(1, tf.int64), first, first_objective, first_success),
        maximum_iterations=restarts - 1,
    )
    return best


def gradient_attack_restarts(
    attack_once: Callable[[tf.Tensor], tf.Tensor],
    randomized: bool,
    logits_fn: LogitsFn,
    loss_fn,
    x,
    labels,
    seed,
    restarts: int,
    targeted: bool,
):
    """Restart policy of the gradient attacks (FGSM, PGD): a deterministic attack runs once;
    a randomized one keeps the worst case of `restarts` starts, scored by the loss it climbs
    (descends, when targeted)."""
    if not randomized:
        return attack_once(seed)
    sign = -1.0 if targeted else 1.0
    return worst_case_over_restarts(
        attack_once,
        logits_fn,
        lambda labels, logits: sign * loss_fn(labels=labels, logits=logits),
        x,
        labels,
        seed,
        restarts,
        targeted,
    )
