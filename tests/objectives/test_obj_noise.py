"""Gaussian noise augmentation (Shafahi et al. 2019 sec. 4)."""

import numpy as np
import pytest
import tensorflow as tf

from lrm_tf.objectives import gaussian_noise

SEED = tf.constant([3, 14], tf.int32)


def test_same_seed_same_noise_other_seed_other_noise():
    x = tf.fill([4, 8, 8, 3], 0.5)
    first = gaussian_noise(x, 0.1, SEED)
    again = gaussian_noise(x, 0.1, SEED)
    other = gaussian_noise(x, 0.1, tf.constant([3, 15], tf.int32))
    np.testing.assert_array_equal(first.numpy(), again.numpy())
    assert not np.allclose(first.numpy(), other.numpy())


def test_noise_statistics_match_sigma():
    x = tf.fill([200_000], 0.5)
    noise = (gaussian_noise(x, 0.1, SEED, clip=False) - x).numpy()
    # Standard error of the sample std is sigma / sqrt(2n) ~ 1.6e-4.
    assert noise.std() == pytest.approx(0.1, abs=2e-3)
    assert noise.mean() == pytest.approx(0.0, abs=2e-3)


def test_clipping_respected_by_default_and_optional():
    x = tf.fill([10_000], 0.5)
    clipped = gaussian_noise(x, 1.0, SEED).numpy()
    assert clipped.min() == 0.0 and clipped.max() == 1.0  # sigma 1: both ends are reached
    unclipped = gaussian_noise(x, 1.0, SEED, clip=False).numpy()
    assert unclipped.min() < 0.0 and unclipped.max() > 1.0
    # Inside the range, clipping leaves the noisy value untouched.
    inside = (unclipped > 0.0) & (unclipped < 1.0)
    np.testing.assert_array_equal(clipped[inside], unclipped[inside])


def test_clipping_in_the_0_255_scale():
    x = tf.fill([10_000], 250.0)
    noisy = gaussian_noise(x, 30.0, SEED, clip_min=0.0, clip_max=255.0).numpy()
    assert noisy.max() == 255.0 and noisy.min() >= 0.0
    assert noisy.std() > 10.0  # the noise is in pixel units, not rescaled
