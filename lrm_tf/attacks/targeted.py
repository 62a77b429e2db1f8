"""Target selection for targeted attacks: the least-likely class and a random wrong class.

Kurakin et al. 2017, "Adversarial machine learning at scale" (Step-LL, Iter-LL); the suite of
Kannan et al. 2018 (ALP), sec. 5.3.4. The targeted attacks themselves are FGSM and PGD run
with `targeted=True` (they minimise the cross-entropy to the target, as CleverHans does).
"""

from __future__ import annotations

import tensorflow as tf

from lrm_tf.attacks import _common

# The ALP paper's attack names and ours. "Iter" is iterative without random start, "PGD" with
# one; ALP's largest setting is 10 steps of 2/255 inside 16/255 (ImageNet, [0, 1] scale).
KURAKIN_SUITE = {
    "Step-LL": "step_ll",
    "Step-Rand": "step_rand",
    "R+Step-LL": "r_step_ll",
    "R+Step-Rand": "r_step_rand",
    "Iter-LL": "iter10_ll",
    "Iter-Rand": "iter10_rand",
    "PGD-LL": "pgd10_ll",
    "PGD-Rand": "pgd10_rand",
}


def least_likely_target(clean_logits):
    """The class the model finds least likely on the clean input (Kurakin et al. 2017's
    Step-LL target): argmin of the logits, float [B, classes] -> int64 [B]."""
    return tf.argmin(clean_logits, axis=-1)


def random_target(labels, num_classes, seed, keys):
    """A class drawn uniformly from the num_classes - 1 classes other than `labels`.

    Drawn per example from `seed` and the example keys (see `_common`), so it does not depend
    on the batch split.

    Args:
      labels: int [B], the classes to avoid; num_classes: C (int or int64 tensor).
      seed: int64 [2]; keys: int64 [B] example fingerprints.

    Returns:
      int64 [B], each different from its label.
    """
    offset = _common.per_example_uniform(
        _common.fold_seed(seed, _common.STREAM_RANDOM_TARGET),
        keys,
        [],
        0,
        tf.cast(num_classes, tf.int64) - 1,
        tf.int64,
    )
    # labels + 1 + U{0..C-2} (mod C) is uniform over the other classes.
    return tf.math.floormod(tf.cast(labels, tf.int64) + 1 + offset, tf.cast(num_classes, tf.int64))


def select_targets(target: str, clean_logits, labels, seed, keys):
    """'ll' or 'rand' targets for a batch.

    Args:
      target: 'll' or 'rand'.
      clean_logits: float [B, classes] on the clean batch.
      labels: int [B], the true or predicted classes.
      seed: int64 [2]; keys: int64 [B] example fingerprints.

    Returns:
      int64 [B] target classes.

    Raises:
      ValueError: an unknown selector.
    """
    if target == "ll":
        return least_likely_target(clean_logits)
    if target == "rand":
        num_classes = tf.shape(clean_logits, out_type=tf.int64)[-1]
        return random_target(labels, num_classes, seed, keys)
    raise ValueError(f"unknown target selector {target!r}; expected 'll' or 'rand'")
