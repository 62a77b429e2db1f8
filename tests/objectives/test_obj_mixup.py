"""mixup (Zhang et al. 2018) and VH-mixup (Summers & Dinneen 2019) on hand-made images."""

import numpy as np
import pytest
import tensorflow as tf

from lrm_tf.objectives import vh_mixup
from lrm_tf.objectives.mixup import mixup

SEED = tf.constant([7, 11], tf.int32)
MIXERS = [mixup, vh_mixup]


def _ones_and_zeros(batch, height, width, channels=3):
    """Alternating all-ones images (class 0) and all-zeros images (class 1)."""
    is_ones = (np.arange(batch) % 2 == 0).astype(np.float32)
    images = np.broadcast_to(is_ones[:, None, None, None], (batch, height, width, channels)).copy()
    labels = tf.one_hot(np.where(is_ones > 0, 0, 1), 2)
    return tf.constant(images), labels


@pytest.mark.parametrize("mixer", MIXERS)
@pytest.mark.parametrize("per_example", [False, True])
def test_mean_pixel_equals_weight_of_the_ones_class(mixer, per_example):
    # Whatever the partner, the mixed image's share of "ones" pixels is the
    # weight its label gives the class of the all-ones images. H != W catches a
    # row/column mix-up.
    images, labels = _ones_and_zeros(32, 6, 10)
    mixed_x, mixed_y = mixer(images, labels, 1.0, SEED, per_example=per_example)
    assert mixed_x.shape == images.shape and mixed_y.shape == labels.shape
    np.testing.assert_allclose(tf.reduce_sum(mixed_y, -1).numpy(), 1.0, atol=1e-6)
    mean_pixel = tf.reduce_mean(mixed_x, axis=[1, 2, 3]).numpy()
    np.testing.assert_allclose(mean_pixel, mixed_y[:, 0].numpy(), atol=1e-6)
    # Some examples really are mixed (not every pair is ones-ones or zeros-zeros).
    assert np.any((mixed_y[:, 0].numpy() > 0.01) & (mixed_y[:, 0].numpy() < 0.99))


def _indexed_batch(batch):
    """Example i: constant image of value i, one-hot label of class i."""
    images = tf.constant(
        np.broadcast_to(np.arange(batch, dtype=np.float32)[:, None, None, None], (batch, 4, 4, 1)).copy()
    )
    return images, tf.one_hot(np.arange(batch), batch)


@pytest.mark.parametrize("mixer", MIXERS)
@pytest.mark.parametrize("per_example", [False, True])
def test_pixels_are_the_label_weighted_mix_of_the_two_sources(mixer, per_example):
    images, labels = _indexed_batch(12)
    mixed_x, mixed_y = mixer(images, labels, 0.5, SEED, per_example=per_example)
    y = mixed_y.numpy()
    # At most two classes per example (the example and its partner), summing to 1.
    assert np.all((y > 0).sum(-1) <= 2)
    np.testing.assert_allclose(y.sum(-1), 1.0, atol=1e-6)
    # Mean pixel = sum_k weight_k * k, because source image k has value k.
    np.testing.assert_allclose(mixed_x.numpy().mean(axis=(1, 2, 3)), y @ np.arange(12), rtol=1e-5, atol=1e-5)


def _own_weights_of_mixed_examples(mixed_y):
    """lam of every example paired with another one (its weight on its own class)."""
    y = mixed_y.numpy()
    own = np.diag(y)
    return own[own < 1.0 - 1e-6]


def test_mixup_one_lambda_per_batch_by_default():
    images, labels = _indexed_batch(16)
    _, mixed_y = mixup(images, labels, 1.0, SEED)
    own = _own_weights_of_mixed_examples(mixed_y)
    assert own.size >= 2
    np.testing.assert_allclose(own, own[0], atol=1e-6)
    # Zhang et al.'s mixup has no spatial structure: every pixel is the same mix.
    mixed_x, _ = mixup(images, labels, 1.0, SEED)
    np.testing.assert_allclose(mixed_x.numpy(), mixed_x.numpy()[:, :1, :1, :] * np.ones((1, 4, 4, 1)))


def test_mixup_per_example_draws_several_lambdas():
    images, labels = _indexed_batch(16)
    _, mixed_y = mixup(images, labels, 1.0, SEED, per_example=True)
    own = _own_weights_of_mixed_examples(mixed_y)
    assert np.unique(np.round(own, 5)).size > 1


@pytest.mark.parametrize("alpha", [0.2, 1.0, 4.0])
def test_mixup_lambda_follows_beta_alpha_alpha(alpha):
    # Beta(a, a): mean 1/2, variance 1 / (4 (2a + 1)).
    images, labels = _indexed_batch(2000)
    _, mixed_y = mixup(images[:, :1, :1], labels, alpha, SEED, per_example=True)
    own = _own_weights_of_mixed_examples(mixed_y)
    assert own.mean() == pytest.approx(0.5, abs=0.03)
    assert own.var() == pytest.approx(1.0 / (4.0 * (2.0 * alpha + 1.0)), rel=0.12)


def test_mixup_is_stateless():
    images, labels = _indexed_batch(8)
    first = mixup(images, labels, 1.0, SEED)
    again = mixup(images, labels, 1.0, SEED)
    other = mixup(images, labels, 1.0, tf.constant([7, 12], tf.int32))
    np.testing.assert_array_equal(first[0].numpy(), again[0].numpy())
    np.testing.assert_array_equal(first[1].numpy(), again[1].numpy())
    assert not np.array_equal(first[1].numpy(), other[1].numpy())


def test_vh_mixup_image_is_a_mix_of_a_vertical_and_a_horizontal_concat():
    height, width = 6, 10
    images, labels = _ones_and_zeros(64, height, width, channels=1)
    mixed_x, mixed_y = vh_mixup(images, labels, 1.0, SEED)
    x = mixed_x.numpy()[..., 0]
    y = mixed_y.numpy()
    checked = 0
    for i in range(0, 64, 2):  # own image all ones; y[i, 1] > 0 means the partner is all zeros
        if y[i, 1] <= 0.0:
            continue
        grid = x[i]
        # Split points are < H and < W, so the bottom-right pixel is the partner's (0).
        assert grid[-1, -1] == pytest.approx(0.0, abs=1e-6)
        row_profile = grid[:, -1]  # lam * [h < r]
        column_profile = grid[-1, :]  # (1 - lam) * [w < c]
        np.testing.assert_allclose(grid, row_profile[:, None] + column_profile[None, :], atol=1e-6)
        assert np.all(np.diff(row_profile) <= 1e-6) and np.all(np.diff(column_profile) <= 1e-6)
        lam = row_profile.max()
        split_row = int((row_profile > 1e-6).sum())
        split_column = int((column_profile > 1e-6).sum())
        assert len(np.unique(np.round(row_profile, 5))) <= 2
        assert len(np.unique(np.round(column_profile, 5))) <= 2
        if split_row > 0 and split_column > 0:
            assert column_profile.max() == pytest.approx(1.0 - lam, abs=1e-5)
            # Label weight of the ones image = lam * r/H + (1 - lam) * c/W.
            assert y[i, 0] == pytest.approx(
                lam * split_row / height + (1.0 - lam) * split_column / width, abs=1e-5
            )
        checked += 1
    assert checked >= 5


def test_vh_mixup_splits_are_independent_per_example_by_default():
    images, labels = _ones_and_zeros(64, 8, 8, channels=1)
    mixed_x, mixed_y = vh_mixup(images, labels, 1.0, SEED)
    x = mixed_x.numpy()[..., 0]
    y = mixed_y.numpy()
    mixed_pairs = [i for i in range(0, 64, 2) if y[i, 1] > 0.0]
    split_rows = {int((x[i][:, -1] > 1e-6).sum()) for i in mixed_pairs}
    split_columns = {int((x[i][-1, :] > 1e-6).sum()) for i in mixed_pairs}
    assert len(split_rows) > 1 and len(split_columns) > 1
    # per_example=False: one split row, one split column and one lam for the batch.
    shared_x, shared_y = vh_mixup(images, labels, 1.0, SEED, per_example=False)
    shared = shared_x.numpy()[..., 0]
    pairs = [i for i in range(0, 64, 2) if shared_y.numpy()[i, 1] > 0.0]
    assert len(pairs) >= 2
    for i in pairs[1:]:
        np.testing.assert_allclose(shared[i], shared[pairs[0]], atol=1e-6)
