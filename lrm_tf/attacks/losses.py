"""Per-example attack losses. Every function takes (labels, logits) and returns a [B] tensor.

The gradient attacks MAXIMISE these losses (untargeted); a targeted attack minimises the loss
towards the target label, as CleverHans does with `targeted=True` (it negates the loss).
The keyword names `labels=`, `logits=` match CleverHans' `loss_fn` convention, so these
functions can be passed to `cleverhans.tf2.attacks.*` unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

import tensorflow as tf

LossFn = Callable[..., tf.Tensor]

# Madry et al.'s CIFAR/MNIST challenge code uses kappa = 50 in its CW attack loss.
CW_CONFIDENCE = 50.0
# Madry's code hides the true logit from the max with a large negative offset, not -inf,
# so that the max stays finite; the value matters only for exact reproduction.
_MADRY_MASK_OFFSET = 1e4
# CleverHans' spsa.margin_logit_loss uses this offset for the same purpose.
_CLEVERHANS_MASK_OFFSET = 99999.0


def xent_loss(labels, logits):
    """Softmax cross-entropy per example (CleverHans' default `loss_fn`).

    Args:
      labels: int [B]; logits: float [B, classes].

    Returns:
      float [B].
    """
    return tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)


def cw_loss(labels, logits, confidence: float = CW_CONFIDENCE):
    """Madry's CW margin loss per example: -relu(z_y - max_{j != y} z_j + confidence).

    Carlini & Wagner 2017, in the form of Madry et al. 2018's `pgd_attack.py`.

    Args:
      labels: int [B]; logits: float [B, classes].
      confidence: kappa (Madry's code: 50).

    Returns:
      float [B], <= 0; maximising it pushes the true logit below the runner-up by kappa.
    """
    num_classes = tf.shape(logits)[-1]
    label_mask = tf.one_hot(labels, num_classes, dtype=logits.dtype)
    correct_logit = tf.reduce_sum(label_mask * logits, axis=-1)
    wrong_logit = tf.reduce_max((1.0 - label_mask) * logits - _MADRY_MASK_OFFSET * label_mask, axis=-1)
    return -tf.nn.relu(correct_logit - wrong_logit + confidence)


def margin_loss(labels, logits):
    """CleverHans' SPSA `margin_logit_loss`: max_{j != y} z_j - z_y (high when y is unlikely).

    Args:
      labels: int [B]; logits: float [B, classes].

    Returns:
      float [B].
    """
    num_classes = tf.shape(logits)[-1]
    label_mask = tf.one_hot(labels, num_classes, dtype=logits.dtype)
    label_logit = tf.reduce_sum(label_mask * logits, axis=-1)
    highest_other = tf.reduce_max(logits - label_mask * _CLEVERHANS_MASK_OFFSET, axis=-1)
    return highest_other - label_logit


LOSSES: dict[str, LossFn] = {"xent": xent_loss, "cw": cw_loss, "margin": margin_loss}


def get_loss(loss: str | LossFn) -> LossFn:
    """A loss by name ('xent', 'cw', 'margin') or a callable(labels, logits) passed through.

    Raises:
      ValueError: an unknown name.
    """
    if callable(loss):
        return loss
    try:
        return LOSSES[loss]
    except KeyError:
        raise ValueError(
            f"unknown attack loss {loss!r}; expected one of {sorted(LOSSES)} or a callable(labels, logits)"
        ) from None
