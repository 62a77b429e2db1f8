"""Gaussian noise augmentation (Shafahi et al. sec. 4; ALP paper sec. 4.2.2)."""

import tensorflow as tf

from lrm_tf.objectives._math import to_dtype


def gaussian_noise(x, sigma, seed, clip_min=0.0, clip_max=1.0, clip=True):
    """Shafahi et al. 2019 sec. 4: x + N(0, sigma^2), stateless in `seed` ([2] ints).

    sigma is in the pixel scale of x (0.3/0.5 for MNIST in [0, 1]; 20/30/40 for
    CIFAR in [0, 255]). Clipping to [clip_min, clip_max] is on by default: neither
    paper says the noisy image leaves the pixel range, and every input the model
    sees at evaluation (clean or attacked, attacks clip) lies inside it, so
    clipping keeps training inputs in the domain the model is evaluated on. With
    clip=False the noise is added unbounded.

    Args:
      x: [batch, H, W, C] images.
      sigma: noise standard deviation, in the scale of x.
      seed: int [2] seed of the stateless draw.
      clip_min, clip_max: the input range clipped to.
      clip: clip the noisy images.

    Returns:
      tensor shaped and typed like x.
    """
    x = tf.convert_to_tensor(x)
    noise = tf.random.stateless_normal(tf.shape(x), seed=seed, dtype=x.dtype)
    noisy = x + to_dtype(sigma, x.dtype) * noise
    if clip:
        noisy = tf.clip_by_value(noisy, to_dtype(clip_min, x.dtype), to_dtype(clip_max, x.dtype))
    return noisy
