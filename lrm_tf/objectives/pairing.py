"""Logit pairing: clean (CLP) and adversarial (ALP) pairing, and LRM's decoupled pairing.

Distance behind the "L2 loss" of the ALP paper, per pair of logit vectors d = z - z':
  squared=True, mean_over_classes=True (default): mean_c d_c^2 = ||d||^2 / C. The
      released ALP code computes tf.losses.mean_squared_error over the
      [batch, classes] logits, so this is the scale the published weights
      (0.5 CIFAR-10/SVHN, 1 MNIST, 5.0 CIFAR-100) were tuned at; it also fits
      LRM's remark that the pairing loss is typically an order of magnitude
      smaller than the cross-entropy.
  squared=True, mean_over_classes=False: ||d||^2 (LRM eq. 9/10 read literally).
  squared=False: the square root of the above per pair, ||d||_2 (sum) or the
      root-mean-square difference ||d||_2 / sqrt(C) (mean).
"""

import tensorflow as tf

from lrm_tf.objectives._math import safe_sqrt, to_dtype

_DIRECTIONS = ("clean_to_adv", "adv_to_clean")
# Objective.pairing_distance -> the (squared, mean_over_classes) switches of the functions below.
_DISTANCES = {"mean_squared": (True, True), "squared_l2": (True, False), "l2": (False, False)}


def distance_options(distance):
    """Keyword arguments of the pairing functions for a named distance.

    Args:
      distance: 'mean_squared' (mean_c d_c^2, the ALP code), 'squared_l2' (||d||^2) or 'l2'
        (||d||_2); see the module docstring.

    Returns:
      dict with `squared` and `mean_over_classes`.

    Raises:
      ValueError: an unknown distance.
    """
    if distance not in _DISTANCES:
        raise ValueError(f"unknown pairing distance {distance!r}; choose one of {', '.join(_DISTANCES)}")
    squared, mean_over_classes = _DISTANCES[distance]
    return {"squared": squared, "mean_over_classes": mean_over_classes}


def _pair_distance(logits_a, logits_b, squared, mean_over_classes):
    """Per-pair distance between rows of two [pairs, classes] tensors -> [pairs]."""
    squared_difference = tf.square(logits_a - logits_b)
    if mean_over_classes:
        per_pair = tf.reduce_mean(squared_difference, axis=-1)
    else:
        per_pair = tf.reduce_sum(squared_difference, axis=-1)
    return per_pair if squared else safe_sqrt(per_pair)


def clean_logit_pairing(logits, squared=True, mean_over_classes=True):
    """ALP paper sec. 4.2.2 (CLP): (2/m) sum_{i<=m/2} L(z_i, z_{i+m/2}) -> scalar.

    The pairs are (i, i + m//2). Batches arrive shuffled, so these are the
    "randomly selected" clean pairs of the paper. With an odd batch the last
    example has no partner and is left out; the result is the mean over the
    m//2 pairs, which is (2/m) * sum for even m. The term table calls it on the
    global batch under tf.distribute, so the pairs are those of one device.

    Args:
      logits: [m, C] clean logits.
      squared, mean_over_classes: the distance, see the module docstring
        (`distance_options`).

    Returns:
      scalar.
    """
    logits = tf.convert_to_tensor(logits)
    half = tf.shape(logits)[0] // 2
    first_half = logits[:half]
    second_half = logits[half : 2 * half]
    return tf.reduce_mean(_pair_distance(first_half, second_half, squared, mean_over_classes))


def adversarial_logit_pairing(clean_logits, adv_logits, squared=True, mean_over_classes=True):
    """Kannan et al. 2018 sec. 4.2.1 (ALP, eq. 3 without its weight): (1/m) sum_i L(f(x_i), f(x~_i)).

    Args:
      clean_logits, adv_logits: [m, C] logits of the clean and adversarial images.
      squared, mean_over_classes: the distance, see the module docstring.

    Returns:
      scalar.
    """
    clean_logits = tf.convert_to_tensor(clean_logits)
    adv_logits = tf.cast(adv_logits, clean_logits.dtype)
    return tf.reduce_mean(_pair_distance(clean_logits, adv_logits, squared, mean_over_classes))


def cross_entropy_of_softmaxes(p_logits, q_logits):
    """H(softmax(p), softmax(q)) = -sum_c p_c log q_c per example -> [batch]; p is the target."""
    p_logits = tf.convert_to_tensor(p_logits)
    q_logits = tf.cast(q_logits, p_logits.dtype)
    target = tf.nn.softmax(p_logits, axis=-1)
    return -tf.reduce_sum(target * tf.nn.log_softmax(q_logits, axis=-1), axis=-1)


def softmax_cross_entropy_between(clean_logits, adv_logits, direction="clean_to_adv"):
    """LRM sec. 4.1 h: batch mean of the cross-entropy between the clean and adversarial softmaxes -> scalar.

    direction "clean_to_adv" (default): h = -sum softmax(f(x)) log softmax(f(x~)),
    the clean softmax is the target. Its gradient on the adversarial logits is
    (softmax(f(x~)) - softmax(f(x))) / B, pulling adversarial predictions towards
    the clean ones (distillation from the clean domain, as ALP describes it).
    That is what the published ratio 0.125 (c*h = 8 J_adv, CIFAR-10) can afford:
    LRM trains on adversarial examples only, so the clean logits get no
    cross-entropy of their own, and the reverse reading ("adv_to_clean") would
    pull the unsupervised clean predictions towards the adversary's with eight
    times the weight of the data term.

    Gradients flow into both arguments: the paper's "mild expanding effect" on
    similar logits is the entropy of the target, h = H(p) + KL(p||q), being
    minimised through p.
    """
    if direction == "clean_to_adv":
        per_example = cross_entropy_of_softmaxes(clean_logits, adv_logits)
    elif direction == "adv_to_clean":
        per_example = cross_entropy_of_softmaxes(adv_logits, clean_logits)
    else:
        raise ValueError(f"unknown h direction {direction!r}; expected one of {_DIRECTIONS}")
    return tf.reduce_mean(per_example)


def logit_norm_penalty(clean_logits, adv_logits):
    """LRM eq. 11 regulariser (Summers & Dinneen 2019): mean_i ||f(x_i)||^2 + ||f(x~_i)||^2.

    Args:
      clean_logits, adv_logits: [batch, C].

    Returns:
      scalar.
    """
    clean_logits = tf.convert_to_tensor(clean_logits)
    adv_logits = tf.cast(adv_logits, clean_logits.dtype)
    squared_norms = tf.reduce_sum(tf.square(clean_logits), axis=-1) + tf.reduce_sum(
        tf.square(adv_logits), axis=-1
    )
    return tf.reduce_mean(squared_norms)


def decoupled_pairing_coefficient(j_adv, h, ratio, epsilon=1e-12):
    """LRM sec. 4.1: c = (1/ratio) * stop_gradient(J_adv / h), so that J_adv : c*h = ratio.

    Args:
      j_adv: scalar training loss J.
      h: scalar cross-entropy between the softmaxes (`softmax_cross_entropy_between`).
      ratio: the configured J : c*h.
      epsilon: floor on h.

    Returns:
      scalar c, without gradient.
    """
    j_adv = tf.convert_to_tensor(j_adv)
    h = tf.cast(h, j_adv.dtype)
    # h is a cross-entropy, so h >= 0; the floor only matters when both
    # distributions are one-hot and identical, where the ratio is undefined.
    ratio_of_losses = tf.stop_gradient(j_adv / tf.maximum(h, to_dtype(epsilon, j_adv.dtype)))
    return ratio_of_losses / to_dtype(ratio, j_adv.dtype)


def decoupled_pairing(j_adv, clean_logits, adv_logits, beta, ratio, direction="clean_to_adv", epsilon=1e-12):
    """LRM eq. 11 with the adaptive coefficient: c*h(f(x), f(x~)) + beta*(||f(x)||^2 + ||f(x~)||^2).

    Args:
      j_adv: scalar adversarial training loss J (the caller's; not included in
        "total").
      clean_logits, adv_logits: [batch, classes] logits f(x) and f(x~).
      beta: weight of the logit norm penalty.
      ratio: the configured J_adv : c*h.
      direction: which softmax is the target of h, see
        `softmax_cross_entropy_between` ("clean_to_adv" by default).
      epsilon: floor on h in the coefficient.

    Returns:
      dict of scalars: "h" (batch mean), "coef" (no gradient), "weighted_h"
      (coef * h), "norm_penalty" (unweighted) and "total" = coef * h + beta *
      norm_penalty, the term to add to J_adv.
    """
    h = softmax_cross_entropy_between(clean_logits, adv_logits, direction)
    j_adv = tf.cast(j_adv, h.dtype)
    coef = decoupled_pairing_coefficient(j_adv, h, ratio, epsilon)
    norm_penalty = logit_norm_penalty(clean_logits, adv_logits)
    weighted_h = coef * h
    total = weighted_h + to_dtype(beta, h.dtype) * norm_penalty
    return {
        "h": h,
        "coef": coef,
        "weighted_h": weighted_h,
        "norm_penalty": norm_penalty,
        "total": total,
    }
