"""Numerically safe norms and dtype handling shared by the objective terms."""

import tensorflow as tf


def safe_sqrt(squared):
    """sqrt that is exactly 0 at 0 and has gradient 0 (not NaN) there."""
    # tf.sqrt has an infinite derivative at 0, and zero logits are a real case
    # (zero-initialised heads, fully squeezed models). The double tf.where keeps
    # the NaN out of both the forward value and the backward pass.
    positive = squared > 0
    safe_squared = tf.where(positive, squared, tf.ones_like(squared))
    return tf.where(positive, tf.sqrt(safe_squared), tf.zeros_like(squared))


def row_l2_norm(matrix):
    """Euclidean norm of every row of a [batch, classes] tensor -> [batch]."""
    return safe_sqrt(tf.reduce_sum(tf.square(matrix), axis=-1))


def frobenius_norm(matrix):
    """Frobenius norm of a whole tensor -> scalar."""
    return safe_sqrt(tf.reduce_sum(tf.square(matrix)))


def to_dtype(value, dtype):
    """`value` as a tensor of `dtype`, converting Python numbers at full precision."""
    # tf.cast(0.95, tf.float64) would first round 0.95 to float32; dtype_hint
    # builds the constant directly in the target dtype.
    return tf.cast(tf.convert_to_tensor(value, dtype_hint=dtype), dtype)
