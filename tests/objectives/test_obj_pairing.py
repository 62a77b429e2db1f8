"""Clean / adversarial logit pairing (Kannan et al. 2018) and LRM's decoupled pairing
(Summers & Dinneen 2019)."""

import math

import numpy as np
import pytest
import tensorflow as tf

from lrm_tf.objectives import (
    adversarial_logit_pairing,
    clean_logit_pairing,
    cross_entropy_of_softmaxes,
    decoupled_pairing,
    decoupled_pairing_coefficient,
    logit_norm_penalty,
    soft_cross_entropy,
    softmax_cross_entropy_between,
)


def _np_softmax(logits):
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


# Pairs (0, 2) and (1, 3): differences (0, 2) and (0, -3).
CLP_LOGITS = tf.constant([[1.0, 2.0], [3.0, 4.0], [1.0, 0.0], [3.0, 7.0]])


@pytest.mark.parametrize(
    "squared, mean_over_classes, expected",
    [
        (True, True, (4 / 2 + 9 / 2) / 2),  # mean over the 2 classes, then pairs: 3.25
        (True, False, (4 + 9) / 2),  # 6.5
        (False, False, (2 + 3) / 2),  # Euclidean: 2.5
        (False, True, (math.sqrt(2) + math.sqrt(4.5)) / 2),  # root mean square over classes
    ],
)
def test_clean_logit_pairing_hand_values(squared, mean_over_classes, expected):
    value = clean_logit_pairing(CLP_LOGITS, squared=squared, mean_over_classes=mean_over_classes)
    assert value.numpy() == pytest.approx(expected)


def test_clean_logit_pairing_odd_batch_leaves_last_example_out():
    odd = tf.concat([CLP_LOGITS, [[100.0, -100.0]]], axis=0)
    # half = 2: pairs (0, 2), (1, 3), row 4 unpaired -> same value as the even batch.
    assert clean_logit_pairing(odd).numpy() == pytest.approx(3.25)


def test_default_distance_is_released_alp_code_mean_squared_error():
    # The ALP release computes tf.losses.mean_squared_error over [batch, classes];
    # that is the mean of all squared entries.
    rng = np.random.default_rng(2)
    clean = rng.normal(size=(6, 10)).astype(np.float32)
    adv = rng.normal(size=(6, 10)).astype(np.float32)
    expected = ((clean - adv) ** 2).mean()
    assert adversarial_logit_pairing(clean, adv).numpy() == pytest.approx(expected, rel=1e-6)
    both = np.concatenate([clean, adv])
    assert clean_logit_pairing(both).numpy() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "squared, mean_over_classes, expected",
    [
        (True, True, (4 / 3 + 3 / 3) / 2),  # 7/6
        (True, False, (4 + 3) / 2),  # 3.5
        (False, False, (2 + math.sqrt(3)) / 2),
    ],
)
def test_adversarial_logit_pairing_hand_values(squared, mean_over_classes, expected):
    clean = tf.constant([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    adv = tf.constant([[1.0, 0.0, 3.0], [1.0, 1.0, 1.0]])
    # Differences: (0, 2, 0) -> squared norm 4; (-1, -1, -1) -> 3.
    value = adversarial_logit_pairing(clean, adv, squared=squared, mean_over_classes=mean_over_classes)
    assert value.numpy() == pytest.approx(expected)


def test_pairing_gradient_is_finite_for_identical_logits():
    # The Euclidean form has sqrt'(0) at identical pairs; it must not give NaN.
    logits = tf.ones([4, 3])
    with tf.GradientTape() as tape:
        tape.watch(logits)
        value = clean_logit_pairing(logits, squared=False)
    assert np.all(np.isfinite(tape.gradient(value, logits).numpy()))


# softmax(0, 0, ln 2) = (1/4, 1/4, 1/2); softmax(0, ln 2, ln 2) = (1/5, 2/5, 2/5).
H_CLEAN = tf.constant([[0.0, 0.0, math.log(2.0)]])
H_ADV = tf.constant([[0.0, math.log(2.0), math.log(2.0)]])
# Clean target: -(1/4 ln 1/5 + 1/4 ln 2/5 + 1/2 ln 2/5).
H_CLEAN_TO_ADV = -(0.25 * math.log(0.2) + 0.25 * math.log(0.4) + 0.5 * math.log(0.4))
# Adversarial target: -(1/5 ln 1/4 + 2/5 ln 1/4 + 2/5 ln 1/2).
H_ADV_TO_CLEAN = -(0.2 * math.log(0.25) + 0.4 * math.log(0.25) + 0.4 * math.log(0.5))


def test_cross_entropy_of_softmaxes_hand_values():
    both = cross_entropy_of_softmaxes(tf.concat([H_CLEAN, H_ADV], 0), tf.concat([H_ADV, H_CLEAN], 0))
    np.testing.assert_allclose(both.numpy(), [H_CLEAN_TO_ADV, H_ADV_TO_CLEAN], rtol=1e-6)


def test_softmax_cross_entropy_between_directions():
    assert softmax_cross_entropy_between(H_CLEAN, H_ADV).numpy() == pytest.approx(H_CLEAN_TO_ADV, rel=1e-6)
    assert softmax_cross_entropy_between(H_CLEAN, H_ADV, direction="adv_to_clean").numpy() == (
        pytest.approx(H_ADV_TO_CLEAN, rel=1e-6)
    )
    with pytest.raises(ValueError, match="direction"):
        softmax_cross_entropy_between(H_CLEAN, H_ADV, direction="both")


def test_softmax_cross_entropy_with_itself_is_entropy():
    entropy = -(0.5 * math.log(0.25) + 0.5 * math.log(0.5))  # 1.5 ln 2
    assert softmax_cross_entropy_between(H_CLEAN, H_CLEAN).numpy() == pytest.approx(entropy)


def test_logit_norm_penalty_hand_values():
    clean = tf.constant([[3.0, 4.0], [0.0, 1.0]])
    adv = tf.constant([[1.0, 0.0], [2.0, 2.0]])
    # Example 1: 25 + 1 = 26; example 2: 1 + 8 = 9; mean 17.5.
    assert logit_norm_penalty(clean, adv).numpy() == pytest.approx(17.5)


def test_decoupled_coefficient_hand_value():
    # (1 / 0.125) * (2 / 0.5) = 8 * 4 = 32; then c*h = 16 and J : c*h = 2 / 16 = 0.125.
    coef = decoupled_pairing_coefficient(tf.constant(2.0), tf.constant(0.5), 0.125)
    assert coef.numpy() == pytest.approx(32.0)
    assert 2.0 / (coef.numpy() * 0.5) == pytest.approx(0.125)


def test_decoupled_coefficient_guards_zero_h():
    coef = decoupled_pairing_coefficient(tf.constant(1.0), tf.constant(0.0), 0.95)
    assert np.isfinite(coef.numpy())


CLEAN = tf.constant([[2.0, -1.0, 0.5], [0.0, 1.0, 3.0], [1.0, 1.0, -2.0], [0.3, 0.2, 0.1]])
ADV = tf.constant([[0.5, 1.0, 0.0], [1.0, 1.5, 0.5], [0.0, 2.0, -1.0], [0.1, 0.9, 0.0]])
LABELS = tf.one_hot([0, 2, 1, 0], 3)


@pytest.mark.parametrize("ratio", [0.125, 0.95])
def test_decoupled_pairing_realises_configured_ratio(ratio):
    j_adv = tf.reduce_mean(soft_cross_entropy(LABELS, ADV))
    parts = decoupled_pairing(j_adv, CLEAN, ADV, beta=1e-3, ratio=ratio)
    assert (j_adv / parts["weighted_h"]).numpy() == pytest.approx(ratio, rel=1e-6)


def test_decoupled_pairing_parts():
    j_adv = tf.reduce_mean(soft_cross_entropy(LABELS, ADV))
    parts = decoupled_pairing(j_adv, CLEAN, ADV, beta=1e-3, ratio=0.125)
    clean_np, adv_np = CLEAN.numpy(), ADV.numpy()
    # Default direction: the clean softmax is the target, adversarial logits predict.
    expected_h = -(_np_softmax(clean_np) * np.log(_np_softmax(adv_np))).sum(-1).mean()
    expected_norms = ((clean_np**2).sum(-1) + (adv_np**2).sum(-1)).mean()
    assert parts["h"].numpy() == pytest.approx(expected_h, rel=1e-6)
    assert parts["norm_penalty"].numpy() == pytest.approx(expected_norms, rel=1e-6)
    assert parts["coef"].numpy() == pytest.approx(j_adv.numpy() / expected_h / 0.125, rel=1e-6)
    assert parts["total"].numpy() == pytest.approx(
        parts["coef"].numpy() * expected_h + 1e-3 * expected_norms, rel=1e-6
    )

    reverse = decoupled_pairing(j_adv, CLEAN, ADV, beta=1e-3, ratio=0.125, direction="adv_to_clean")
    expected_reverse_h = -(_np_softmax(adv_np) * np.log(_np_softmax(clean_np))).sum(-1).mean()
    assert reverse["h"].numpy() == pytest.approx(expected_reverse_h, rel=1e-6)
    assert abs(expected_reverse_h - expected_h) > 1e-3


def test_decoupled_coefficient_carries_no_gradient():
    clean = tf.Variable(CLEAN)
    adv = tf.Variable(ADV)
    with tf.GradientTape(persistent=True) as tape:
        j_adv = tf.reduce_mean(soft_cross_entropy(LABELS, adv))
        parts = decoupled_pairing(j_adv, clean, adv, beta=1e-3, ratio=0.125)
    for logits in (clean, adv):
        gradient = tape.gradient(parts["coef"], logits)
        assert gradient is None or np.all(gradient.numpy() == 0.0)

    # With c constant, d(total)/d(adv) = c * dh/d(adv) + beta * 2 * adv / B, and
    # dh/d(adv) = (softmax(adv) - softmax(clean)) / B for the clean-target h.
    batch = CLEAN.shape[0]
    coef = parts["coef"].numpy()
    expected = (
        coef * (_np_softmax(ADV.numpy()) - _np_softmax(CLEAN.numpy())) / batch
        + 1e-3 * 2.0 * ADV.numpy() / batch
    )
    np.testing.assert_allclose(tape.gradient(parts["total"], adv).numpy(), expected, rtol=1e-5, atol=1e-7)
