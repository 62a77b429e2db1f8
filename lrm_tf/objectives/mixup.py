"""mixup (Zhang et al.) and VH-mixup (Summers & Dinneen), stateless in a [2]-int seed.

Both pair every example i of the batch with example perm(i) of a random
permutation of the same batch (Zhang et al.'s implementation), so the output
batch has the input's size; an example may be paired with itself.

Under tf.distribute every replica that gets the same seed draws the same
permutation and coefficients; fold the replica id into the seed for
independent draws per replica.
"""

import tensorflow as tf

from lrm_tf.objectives._math import to_dtype


def _stateless_beta(shape, seed, alpha, dtype):
    """Beta(alpha, alpha) samples as G1 / (G1 + G2) with stateless Gamma draws."""
    gamma_seeds = tf.random.experimental.stateless_split(seed, num=2)
    alpha = to_dtype(alpha, tf.float32)
    # Drawn in float32 whatever the image dtype: Gamma of a small alpha can
    # underflow, and both draws underflowing (only possible for alpha << 1) would
    # give 0/0; those draws fall back to an even mix.
    g1 = tf.random.stateless_gamma(shape, seed=gamma_seeds[0], alpha=alpha, dtype=tf.float32)
    g2 = tf.random.stateless_gamma(shape, seed=gamma_seeds[1], alpha=alpha, dtype=tf.float32)
    total = g1 + g2
    nonzero = total > 0
    lam = tf.where(nonzero, g1 / tf.where(nonzero, total, tf.ones_like(total)), tf.fill(tf.shape(total), 0.5))
    return tf.cast(lam, dtype)


def _mixing_coefficients(batch_size, alpha, seed, per_example, dtype):
    """[batch] coefficients: one Beta draw shared by the batch, or one per example."""
    if per_example:
        return _stateless_beta([batch_size], seed, alpha, dtype)
    return tf.fill([batch_size], _stateless_beta([], seed, alpha, dtype))


def _partners(x, y_soft, seed):
    """The batch reordered by a stateless random permutation: the mixing partners."""
    batch_size = tf.shape(x)[0]
    permutation = tf.argsort(tf.random.stateless_uniform([batch_size], seed=seed))
    return tf.gather(x, permutation), tf.gather(y_soft, permutation)


def _per_example(values, like):
    """Reshape a [batch] tensor to broadcast against `like` ([batch, ...])."""
    shape = tf.concat([tf.shape(values), tf.ones([tf.rank(like) - 1], tf.int32)], axis=0)
    return tf.reshape(tf.cast(values, like.dtype), shape)


def mixup(x, y_soft, alpha, seed, per_example=False):
    """Zhang et al. 2018 mixup: lam*x + (1-lam)*x_perm, same for labels; lam ~ Beta(alpha, alpha).

    per_example=False (default) draws one lam for the whole batch, as Zhang et
    al.'s reference code does; True draws one per example.

    Returns:
      (mixed images, mixed soft labels); each label row sums to one when the
      input rows do.
    """
    x = tf.convert_to_tensor(x)
    y_soft = tf.convert_to_tensor(y_soft)
    permutation_seed, lambda_seed = tf.unstack(tf.random.experimental.stateless_split(seed, num=2))
    x_partner, y_partner = _partners(x, y_soft, permutation_seed)
    lam = _mixing_coefficients(tf.shape(x)[0], alpha, lambda_seed, per_example, tf.float32)
    lam_x = _per_example(lam, x)
    lam_y = _per_example(lam, y_soft)
    mixed_x = lam_x * x + (1.0 - lam_x) * x_partner
    mixed_y = lam_y * y_soft + (1.0 - lam_y) * y_partner
    return mixed_x, mixed_y


def _split_points(batch_size, length, seed, per_example):
    """Split indices uniform in {0, ..., length-1}, per example or shared by the batch."""
    # Summers & Dinneen's code draws the split row/column uniformly in [0, H),
    # with the label weight the exact area fraction split / H.
    count = batch_size if per_example else 1
    points = tf.random.stateless_uniform([count], seed=seed, minval=0, maxval=length, dtype=tf.int32)
    return tf.broadcast_to(points, [batch_size])


def vh_mixup(x, y_soft, alpha, seed, per_example=True):
    """Summers & Dinneen 2019 VH-mixup (used by LRM sec. 5.2): mixup of a vertical and a horizontal concat.

    For each pair (x1, x2) = (x_i, x_perm(i)), images [batch, H, W, C]:
      vertical   = rows [0, r) of x1, rows [r, H) of x2,  x1 area r/H
      horizontal = cols [0, c) of x1, cols [c, W) of x2,  x1 area c/W
      mixed      = lam * vertical + (1 - lam) * horizontal, lam ~ Beta(alpha, alpha)
      label      = w * y1 + (1 - w) * y2,  w = lam * r/H + (1 - lam) * c/W,
    w being the share of x1 in the mixed image. r, c are uniform split points
    drawn independently. per_example=True (default) draws r, c and lam per pair,
    as the authors' implementation mixes each pair independently; False shares
    one draw across the batch. Summers & Dinneen use alpha = 1 (Uniform).

    Returns:
      (mixed images, mixed soft labels).
    """
    x = tf.convert_to_tensor(x)
    y_soft = tf.convert_to_tensor(y_soft)
    permutation_seed, row_seed, column_seed, lambda_seed = tf.unstack(
        tf.random.experimental.stateless_split(seed, num=4)
    )
    x_partner, y_partner = _partners(x, y_soft, permutation_seed)
    image_shape = tf.shape(x)
    batch_size, height, width = image_shape[0], image_shape[1], image_shape[2]

    split_rows = _split_points(batch_size, height, row_seed, per_example)
    split_columns = _split_points(batch_size, width, column_seed, per_example)
    # Masks are 1 where the pixel comes from x1: rows above / columns left of the split.
    row_from_first = tf.cast(tf.range(height)[tf.newaxis, :] < split_rows[:, tf.newaxis], x.dtype)
    column_from_first = tf.cast(tf.range(width)[tf.newaxis, :] < split_columns[:, tf.newaxis], x.dtype)
    row_mask = row_from_first[:, :, tf.newaxis, tf.newaxis]
    column_mask = column_from_first[:, tf.newaxis, :, tf.newaxis]
    vertical = row_mask * x + (1.0 - row_mask) * x_partner
    horizontal = column_mask * x + (1.0 - column_mask) * x_partner

    lam = _mixing_coefficients(batch_size, alpha, lambda_seed, per_example, tf.float32)
    lam_x = _per_example(lam, x)
    mixed_x = lam_x * vertical + (1.0 - lam_x) * horizontal

    vertical_share = tf.cast(split_rows, tf.float32) / tf.cast(height, tf.float32)
    horizontal_share = tf.cast(split_columns, tf.float32) / tf.cast(width, tf.float32)
    first_share = lam * vertical_share + (1.0 - lam) * horizontal_share
    share_y = _per_example(first_share, y_soft)
    mixed_y = share_y * y_soft + (1.0 - share_y) * y_partner
    return mixed_x, mixed_y
