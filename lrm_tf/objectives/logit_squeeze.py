"""Logit squeezing: per-example (ALP) and batch-wise Frobenius (Shafahi) forms.

Both functions return the UNWEIGHTED term; the caller multiplies by its
coefficient (lambda of Kannan et al., beta of Shafahi et al. eq. 5).

The batch-wise forms are taken over exactly the rows passed in. Under
tf.distribute a replica sees only its local batch, and a Frobenius norm does not
split into a sum over replicas; the term table (`lrm_tf.objectives.terms`, reduction
'global') therefore calls them on the all-gathered global batch.
"""

import tensorflow as tf

from lrm_tf.objectives._math import frobenius_norm, row_l2_norm


def logit_squeeze_example(logits):
    """Kannan et al. 2018 sec. 4.2.3 "clean logit squeezing": mean_i ||z_i||_2.

    Args:
      logits: [batch, C].

    Returns:
      scalar.
    """
    return tf.reduce_mean(row_l2_norm(tf.convert_to_tensor(logits)))


def logit_squeeze_batch(logits, per_example_scale=True):
    """Shafahi et al. eq. 5 ||Z||_F; with per_example_scale, the poster's ||Z||_F / |b|.

    Which scale matches the published beta (0.5 ... 11): per_example_scale=True,
    the default. Eq. 5 sums the loss L over the examples of the batch, and
    sum_b CE + beta * ||Z||_F is, after dividing the whole objective by |b|,
    mean CE + (beta / |b|) * ||Z||_F -- exactly the poster's form. lrm_tf uses the
    mean cross-entropy, so the term must carry the 1/|b|. Check: the gradient of beta/|b| * ||Z||_F with
    respect to Z has Frobenius norm beta/|b| everywhere, while that of the mean CE
    is at most sqrt(2)/sqrt(|b|); the squeeze overwhelms the data term once
    beta > sqrt(2 |b|) ~ 16 at |b| = 128, just above the largest published
    beta = 11 (and the paper notes that large beta "often fails"). Without the
    1/|b| the same threshold is sqrt(2/|b|) ~ 0.125, below every published beta.

    Args:
      logits: [batch, classes] logits Z of the mini-batch.
      per_example_scale: divide by the batch size |b| (poster form); False gives
        eq. 5 literally, which matches beta only with a summed cross-entropy.
    """
    logits = tf.convert_to_tensor(logits)
    norm = frobenius_norm(logits)
    if not per_example_scale:
        return norm
    return norm / tf.cast(tf.shape(logits)[0], logits.dtype)
