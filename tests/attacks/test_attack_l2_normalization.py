"""L2 steps on tiny gradients (issue 12, fault 5): the exact normalisation g / ||g|| takes the
full step; CleverHans' g / max(||g||, 1e-6) (`l2_normalization='cleverhans'`) shrinks it and
stays op for op CleverHans'."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method as ch_fgm
from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent as ch_pgd

from lrm_tf.attacks import _common, build_attack, fast_gradient_method, projected_gradient_descent
from lrm_tf.attacks.losses import xent_loss
from lrm_tf.config import Threat

PIXELS = (4, 4, 1)  # 16 pixels
SLOPE = 3.8  # each wrong logit falls by SLOPE per unit of every pixel


def margin_model(margin):
    """A linear 16-pixel, 10-class model whose logit margin at x = 0.5 is `margin`.

    The true class (0) has zero weights; every other class has weights -SLOPE and a bias that
    sets the margin. The input gradient of the cross-entropy is 9 e^-margin SLOPE per pixel:
    norm 1.9e-9 at margin 25 (the issue's model), 1.2e-24 at margin 60 (squares underflow).
    """
    kernel = np.zeros((16, 10), np.float32)
    kernel[:, 1:] = -SLOPE
    bias = np.zeros(10, np.float32)
    bias[1:] = SLOPE * 8 - margin  # 16 pixels at 0.5: the wrong logits are -8 SLOPE + bias
    net = keras.Sequential([keras.Input(PIXELS), keras.layers.Flatten(), keras.layers.Dense(10)])
    net.layers[-1].set_weights([kernel, bias])
    return net


def moved(x_adv, x):
    return float(tf.norm(tf.reshape(x_adv - x, [-1])))


X = tf.fill((1,) + PIXELS, 0.5)
Y = tf.constant([0], tf.int64)


def test_the_model_has_the_issues_gradient_norm():
    net = margin_model(25.0)
    logits = net(X).numpy()[0]
    assert logits[0] - logits[1:].max() == pytest.approx(25.0, abs=1e-4)
    grad = _common.loss_gradient(net, xent_loss, X, Y, False)
    assert float(tf.norm(grad)) == pytest.approx(1.9e-9, rel=0.02)


@pytest.mark.parametrize("l2_normalization,distance", [("exact", 0.1), ("cleverhans", 1.9e-4)])
def test_one_l2_step_moves_by_the_step_size_or_cleverhans_shrunk_one(l2_normalization, distance):
    net = margin_model(25.0)
    x_adv = projected_gradient_descent(
        net,
        X,
        Y,
        eps=1.0,
        eps_step=0.1,
        steps=1,
        norm="l2",
        rand_init=False,
        l2_normalization=l2_normalization,
    )
    assert moved(x_adv, X) == pytest.approx(distance, rel=0.02)
    fgsm = fast_gradient_method(net, X, Y, eps=0.1, norm="l2", l2_normalization=l2_normalization)
    assert moved(fgsm, X) == pytest.approx(distance, rel=0.02)


def test_exact_is_the_default_and_survives_underflowing_squares():
    """At margin 60 the squared gradient entries (1e-50) are below float32's range; the exact
    step still has its full size and points down the gradient (every pixel falls)."""
    net = margin_model(60.0)
    x_adv = projected_gradient_descent(net, X, Y, eps=1.0, eps_step=0.1, steps=1, norm="l2", rand_init=False)
    assert moved(x_adv, X) == pytest.approx(0.1, rel=1e-5)
    np.testing.assert_allclose(x_adv.numpy(), 0.5 - 0.025, rtol=1e-5)


@pytest.mark.parametrize("l2_normalization,distance", [("exact", 0.1), ("cleverhans", 1.9e-4)])
def test_the_threat_setting_reaches_the_registry_attacks(l2_normalization, distance):
    net = margin_model(25.0)
    threat = Threat(eps=1.0, eps_step=0.1, l2_normalization=l2_normalization)
    for name in ("iter1_l2_xent", "fgsm_l2_xent"):
        x_adv = build_attack(name, net, threat if name.startswith("iter") else threat.replace(eps=0.1))(X, Y)
        assert moved(x_adv, X) == pytest.approx(distance, rel=0.02), name


def test_unknown_normalization_is_refused():
    with pytest.raises(ValueError, match="l2_normalization"):
        fast_gradient_method(margin_model(25.0), X, Y, eps=0.1, norm="l2", l2_normalization="floor")
    with pytest.raises(Exception, match="l2_normalization"):
        Threat(eps=0.1, eps_step=0.01, l2_normalization="floor")


def test_zero_gradient_gives_no_step():
    grad = tf.zeros((2,) + PIXELS)
    for mode in _common.L2_NORMALIZATIONS:
        assert float(tf.reduce_max(tf.abs(_common.optimize_linear(grad, 0.1, "l2", mode)))) == 0.0
        assert float(tf.reduce_max(tf.abs(_common.clip_eta(grad, "l2", 0.1, mode)))) == 0.0


@pytest.mark.parametrize("margin", [25.0, 2.0])
def test_cleverhans_mode_is_cleverhans_on_tiny_and_ordinary_gradients(margin):
    net = margin_model(margin)
    x = tf.constant(np.random.default_rng(0).uniform(0.3, 0.7, (4,) + PIXELS).astype(np.float32))
    y = tf.zeros([4], tf.int64)
    expected = ch_pgd(net, x, 1.0, 0.1, 3, 2, clip_min=0.0, clip_max=1.0, y=y, rand_init=False)
    ours = projected_gradient_descent(
        net, x, y, eps=1.0, eps_step=0.1, steps=3, norm="l2", rand_init=False, l2_normalization="cleverhans"
    )
    np.testing.assert_allclose(ours.numpy(), expected.numpy(), atol=1e-6)
    expected = ch_fgm(net, x, 0.1, 2, clip_min=0.0, clip_max=1.0, y=y)
    ours = fast_gradient_method(net, x, y, eps=0.1, norm="l2", l2_normalization="cleverhans")
    np.testing.assert_allclose(ours.numpy(), expected.numpy(), atol=1e-6)


def test_cleverhans_mode_matches_cleverhans_on_a_conv_model(logits_fn, batch):
    x, y = batch
    expected = ch_pgd(logits_fn, x, 1.0, 0.25, 7, 2, clip_min=0.0, clip_max=1.0, y=y, rand_init=False)
    ours = projected_gradient_descent(
        logits_fn,
        x,
        y,
        eps=1.0,
        eps_step=0.25,
        steps=7,
        norm="l2",
        rand_init=False,
        l2_normalization="cleverhans",
    )
    assert float(tf.reduce_max(tf.abs(ours - expected))) < 1e-5
