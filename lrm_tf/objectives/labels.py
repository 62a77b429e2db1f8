"""Label smoothing in the two published parameterisations, and soft-label CE."""

import numbers

import tensorflow as tf

from lrm_tf.objectives._math import to_dtype


def _num_classes(labels, dtype):
    return tf.cast(tf.shape(labels)[-1], dtype)


def smooth_labels_lrm(labels_onehot, s):
    """LRM eq. 8 (Summers & Dinneen 2019): 1-s on the true class, s/(C-1) on the others.

    Args:
      labels_onehot: [batch, C] one-hot labels.
      s: smoothing in [0, 1 - 1/C] (a Python number is checked; a tensor is not).

    Returns:
      [batch, C] soft labels, rows summing to 1.

    Raises:
      ValueError: a Python `s` outside [0, 1 - 1/C].
    """
    labels_onehot = tf.convert_to_tensor(labels_onehot)
    dtype = labels_onehot.dtype
    num_classes_static = labels_onehot.shape[-1]
    if isinstance(s, numbers.Real) and num_classes_static is not None:
        # The paper restricts s to [0, 1 - 1/C]; beyond it the true class would get
        # less mass than each wrong class, i.e. the labels would point the wrong way.
        upper = 1.0 - 1.0 / num_classes_static
        if not 0.0 <= s <= upper + 1e-12:
            raise ValueError(
                f"label smoothing s={s} is outside [0, 1 - 1/C] = [0, {upper:.6g}] "
                f"for C={num_classes_static} classes"
            )
    s = to_dtype(s, dtype)
    off_value = s / (_num_classes(labels_onehot, dtype) - 1.0)
    return labels_onehot * (1.0 - s) + (1.0 - labels_onehot) * off_value


def smooth_labels_shafahi(labels_onehot, a):
    """Shafahi et al. 2019 eq. 3: y_warm = y_hot - a * (y_hot - 1/C), a in [0, 1].

    Args:
      labels_onehot: [batch, C] one-hot labels.
      a: smoothing in [0, 1] (a Python number is checked).

    Returns:
      [batch, C] soft labels, rows summing to 1.

    Raises:
      ValueError: a Python `a` outside [0, 1].
    """
    labels_onehot = tf.convert_to_tensor(labels_onehot)
    dtype = labels_onehot.dtype
    if isinstance(a, numbers.Real) and not 0.0 <= a <= 1.0:
        raise ValueError(f"label smoothing a={a} is outside [0, 1]")
    a = to_dtype(a, dtype)
    # Same target as keras.losses.CategoricalCrossentropy(label_smoothing=a); the
    # LRM form gives the identical target when s = a * (C - 1) / C.
    return labels_onehot - a * (labels_onehot - 1.0 / _num_classes(labels_onehot, dtype))


def soft_cross_entropy(soft_labels, logits):
    """Softmax cross-entropy -sum_c y_c log softmax(z)_c per example (the data loss).

    Args:
      soft_labels: [batch, C] hard, smoothed or mixed labels.
      logits: [batch, C].

    Returns:
      [batch] cross-entropies, in nats.
    """
    logits = tf.convert_to_tensor(logits)
    soft_labels = tf.cast(soft_labels, logits.dtype)
    return -tf.reduce_sum(soft_labels * tf.nn.log_softmax(logits, axis=-1), axis=-1)
