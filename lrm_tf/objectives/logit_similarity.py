"""Batch-wise logit similarity (Shafahi et al., poster)."""

import tensorflow as tf

from lrm_tf.objectives._math import frobenius_norm, to_dtype


def logit_similarity(logits, gamma):
    """Shafahi et al. poster "Logit-Similarity": ||Z - gamma||_F / |b|, gamma a scalar -> scalar.

    Returns the unweighted term (the caller multiplies by beta'). The 1/|b| is
    part of the published formula, for the same reason as in
    `logit_squeeze_batch` (see there, also for tf.distribute).

    Args:
      logits: [batch, C] logits Z.
      gamma: the scalar target of every logit.

    Returns:
      scalar.
    """
    logits = tf.convert_to_tensor(logits)
    gamma = to_dtype(gamma, logits.dtype)
    batch_size = tf.cast(tf.shape(logits)[0], logits.dtype)
    return frobenius_norm(logits - gamma) / batch_size
