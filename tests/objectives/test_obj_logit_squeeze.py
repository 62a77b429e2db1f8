"""Logit squeezing (Kannan et al. 2018; Shafahi et al. 2019 eq. 5) and logit similarity."""

import math

import numpy as np
import pytest
import tensorflow as tf

from lrm_tf.objectives import logit_squeeze_batch, logit_squeeze_example
from lrm_tf.objectives.logit_similarity import logit_similarity

# Rows chosen with integer norms: ||(3, 4, 0)|| = 5 and ||(1, 2, 2)|| = 3.
LOGITS = tf.constant([[3.0, 4.0, 0.0], [1.0, 2.0, 2.0]])


def test_example_squeeze_is_mean_row_norm():
    # (5 + 3) / 2 = 4.
    assert logit_squeeze_example(LOGITS).numpy() == pytest.approx(4.0)


def test_batch_squeeze_frobenius():
    # ||Z||_F = sqrt(25 + 9) = sqrt(34); the poster scale divides by |b| = 2.
    assert logit_squeeze_batch(LOGITS, per_example_scale=False).numpy() == pytest.approx(math.sqrt(34.0))
    assert logit_squeeze_batch(LOGITS).numpy() == pytest.approx(math.sqrt(34.0) / 2.0)


def test_batch_squeeze_against_numpy():
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(7, 10))
    expected = np.sqrt((logits**2).sum())
    assert logit_squeeze_batch(tf.constant(logits), per_example_scale=False).numpy() == (
        pytest.approx(expected)
    )
    assert logit_squeeze_batch(tf.constant(logits)).numpy() == pytest.approx(expected / 7)


def test_logit_similarity_gamma_one():
    # Z - 1 = [[2, 3, -1], [0, 1, 1]]: squares sum to 4+9+1+0+1+1 = 16, norm 4, / |b| = 2.
    assert logit_similarity(LOGITS, 1.0).numpy() == pytest.approx(2.0)


def test_logit_similarity_gamma_zero_is_scaled_batch_squeeze():
    assert logit_similarity(LOGITS, 0.0).numpy() == pytest.approx(logit_squeeze_batch(LOGITS).numpy())


@pytest.mark.parametrize(
    "term",
    [
        logit_squeeze_example,
        logit_squeeze_batch,
        lambda z: logit_squeeze_batch(z, per_example_scale=False),
        lambda z: logit_similarity(z, 0.0),
    ],
)
def test_norms_have_finite_gradient_at_zero_logits(term):
    # Zero logits happen (zero-initialised heads); sqrt'(0) must not turn into NaN.
    logits = tf.zeros([3, 4])
    with tf.GradientTape() as tape:
        tape.watch(logits)
        value = term(logits)
    gradient = tape.gradient(value, logits)
    assert value.numpy() == 0.0
    np.testing.assert_array_equal(gradient.numpy(), np.zeros([3, 4]))


def test_batch_squeeze_gradient_is_unit_direction_over_batch_size():
    # d ||Z||_F / dZ = Z / ||Z||_F; with the 1/|b| scale: Z / (||Z||_F |b|).
    with tf.GradientTape() as tape:
        tape.watch(LOGITS)
        value = logit_squeeze_batch(LOGITS)
    expected = LOGITS.numpy() / (math.sqrt(34.0) * 2.0)
    np.testing.assert_allclose(tape.gradient(value, LOGITS).numpy(), expected, rtol=1e-6)
