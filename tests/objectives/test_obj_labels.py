"""Label smoothing (Summers & Dinneen eq. 8; Shafahi et al. eq. 3) and soft-label cross-entropy."""

import math

import numpy as np
import pytest
import tensorflow as tf

from lrm_tf.objectives import smooth_labels_lrm, smooth_labels_shafahi, soft_cross_entropy


def test_lrm_form_hand_values():
    labels = tf.one_hot([2, 0], 4)
    # C = 4, s = 0.3: true class 1 - 0.3 = 0.7, others 0.3 / 3 = 0.1.
    expected = np.array([[0.1, 0.1, 0.7, 0.1], [0.7, 0.1, 0.1, 0.1]])
    np.testing.assert_allclose(smooth_labels_lrm(labels, 0.3).numpy(), expected, atol=1e-7)


def test_shafahi_form_hand_values():
    labels = tf.one_hot([1], 5)
    # C = 5, a = 0.5: true 1 - 0.5 * (1 - 0.2) = 0.6, others 0 - 0.5 * (0 - 0.2) = 0.1.
    expected = np.array([[0.1, 0.6, 0.1, 0.1, 0.1]])
    np.testing.assert_allclose(smooth_labels_shafahi(labels, 0.5).numpy(), expected, atol=1e-7)


@pytest.mark.parametrize("num_classes", [2, 4, 10, 100])
@pytest.mark.parametrize("a", [0.0, 0.2, 0.75, 0.95, 1.0])
def test_forms_agree_when_s_is_a_times_c_minus_1_over_c(num_classes, a):
    labels = tf.one_hot([0, num_classes - 1, num_classes // 2], num_classes, dtype=tf.float64)
    s = a * (num_classes - 1) / num_classes
    np.testing.assert_allclose(
        smooth_labels_lrm(labels, s).numpy(), smooth_labels_shafahi(labels, a).numpy(), atol=1e-12
    )


def test_forms_differ_when_coefficients_are_equal():
    # Same number, different meaning: s = a = 0.4 with C = 4 gives a true-class
    # weight of 0.6 (LRM) versus 1 - 0.4 * 3/4 = 0.7 (Shafahi).
    labels = tf.one_hot([0], 4)
    assert smooth_labels_lrm(labels, 0.4).numpy()[0, 0] == pytest.approx(0.6)
    assert smooth_labels_shafahi(labels, 0.4).numpy()[0, 0] == pytest.approx(0.7)


def test_smoothed_rows_sum_to_one():
    labels = tf.one_hot([3, 1, 7], 10)
    np.testing.assert_allclose(tf.reduce_sum(smooth_labels_lrm(labels, 0.1), -1).numpy(), 1.0, atol=1e-6)
    np.testing.assert_allclose(tf.reduce_sum(smooth_labels_shafahi(labels, 0.9), -1).numpy(), 1.0, atol=1e-6)


def test_lrm_upper_bound_is_uniform_and_beyond_is_rejected():
    labels = tf.one_hot([0], 4)
    # s = 1 - 1/C = 0.75 puts 0.25 on every class.
    np.testing.assert_allclose(smooth_labels_lrm(labels, 0.75).numpy(), 0.25, atol=1e-7)
    with pytest.raises(ValueError, match="outside"):
        smooth_labels_lrm(labels, 0.8)
    with pytest.raises(ValueError, match="outside"):
        smooth_labels_shafahi(labels, 1.2)


def test_soft_cross_entropy_hand_values():
    # softmax([0, 0, ln 2]) = [1/4, 1/4, 1/2].
    logits = tf.constant([[0.0, 0.0, math.log(2.0)], [0.0, 0.0, math.log(2.0)]])
    labels = tf.constant([[0.0, 0.0, 1.0], [0.5, 0.0, 0.5]])
    # Row 1: -ln(1/2) = ln 2. Row 2: -(0.5 ln 1/4 + 0.5 ln 1/2) = 1.5 ln 2.
    expected = np.array([math.log(2.0), 1.5 * math.log(2.0)])
    result = soft_cross_entropy(labels, logits)
    assert result.shape == (2,)
    np.testing.assert_allclose(result.numpy(), expected, rtol=1e-6)


def test_soft_cross_entropy_matches_keras_label_smoothing():
    # Shafahi et al.'s form is Keras' label_smoothing: the same targets must give the same loss.
    import keras

    rng = np.random.default_rng(0)
    logits = rng.normal(size=(5, 7)).astype(np.float32)
    labels = tf.one_hot(rng.integers(0, 7, size=5), 7)
    keras_loss = keras.losses.CategoricalCrossentropy(from_logits=True, label_smoothing=0.3, reduction=None)(
        labels, logits
    )
    ours = soft_cross_entropy(smooth_labels_shafahi(labels, 0.3), logits)
    np.testing.assert_allclose(ours.numpy(), np.asarray(keras_loss), rtol=1e-5)
