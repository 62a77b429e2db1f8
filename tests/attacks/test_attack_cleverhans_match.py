"""With random start off, our FGSM/PGD reproduce cleverhans.tf2 on the same model and batch."""

import numpy as np
import pytest
import tensorflow as tf
from cleverhans.tf2.attacks.fast_gradient_method import fast_gradient_method as ch_fgm
from cleverhans.tf2.attacks.projected_gradient_descent import projected_gradient_descent as ch_pgd

from lrm_tf.attacks import build_attack, cw_loss, fast_gradient_method, projected_gradient_descent
from lrm_tf.config import Threat

TOLERANCE = 1e-5
NORMS = [("linf", np.inf, 0.1, 0.02), ("l2", 2, 1.0, 0.25)]


def max_diff(a, b):
    return float(tf.reduce_max(tf.abs(a - b)))


def largest_perturbation(x_adv, x, norm):
    """The largest per-example perturbation size in `norm`."""
    delta = tf.reshape(x_adv - x, [x.shape[0], -1])
    sizes = tf.norm(delta, ord=np.inf if norm == "linf" else 2, axis=1)
    return float(tf.reduce_max(sizes))


@pytest.mark.parametrize("norm,ch_norm,eps,_", NORMS)
@pytest.mark.parametrize("loss", ["xent", "cw"])
def test_fgsm_matches_cleverhans(logits_fn, batch, norm, ch_norm, eps, _, loss):
    x, y = batch
    ch_loss = None if loss == "xent" else cw_loss
    expected = ch_fgm(logits_fn, x, eps, ch_norm, loss_fn=ch_loss, clip_min=0.0, clip_max=1.0, y=y)
    # CleverHans' own L2 normalisation: the comparison is with CleverHans as it is.
    ours = fast_gradient_method(logits_fn, x, y, eps=eps, norm=norm, loss=loss, l2_normalization="cleverhans")
    assert largest_perturbation(ours, x, norm) > eps / 2  # the attack did move the inputs
    assert max_diff(ours, expected) < TOLERANCE


@pytest.mark.parametrize("norm,ch_norm,eps,eps_step", NORMS)
@pytest.mark.parametrize("loss", ["xent", "cw"])
@pytest.mark.parametrize("use_labels", [True, False])
def test_pgd_matches_cleverhans(logits_fn, batch, norm, ch_norm, eps, eps_step, loss, use_labels):
    x, y = batch
    labels = y if use_labels else None  # None: both use the clean predictions
    ch_loss = None if loss == "xent" else cw_loss
    expected = ch_pgd(
        logits_fn,
        x,
        eps,
        eps_step,
        7,
        ch_norm,
        loss_fn=ch_loss,
        clip_min=0.0,
        clip_max=1.0,
        y=labels,
        rand_init=False,
    )
    ours = projected_gradient_descent(
        logits_fn,
        x,
        labels,
        eps=eps,
        eps_step=eps_step,
        steps=7,
        norm=norm,
        loss=loss,
        rand_init=False,
        l2_normalization="cleverhans",
    )
    assert largest_perturbation(ours, x, norm) > eps_step
    assert max_diff(ours, expected) < TOLERANCE


def test_targeted_pgd_and_graph_mode_match_cleverhans(logits_fn, batch):
    x, _ = batch
    targets = tf.constant(np.arange(x.shape[0]) % 10, tf.int64)
    expected = ch_pgd(
        logits_fn,
        x,
        0.1,
        0.02,
        5,
        np.inf,
        clip_min=0.0,
        clip_max=1.0,
        y=targets,
        targeted=True,
        rand_init=False,
    )
    ours = tf.function(
        lambda x, t: projected_gradient_descent(
            logits_fn, x, t, eps=0.1, eps_step=0.02, steps=5, targeted=True, rand_init=False
        )
    )(x, targets)
    assert max_diff(ours, expected) < TOLERANCE


def test_build_attack_iter_name_is_cleverhans_bim(logits_fn, batch):
    """'iter7_xent' (no random start) through the registry equals CleverHans PGD-7."""
    x, y = batch
    expected = ch_pgd(logits_fn, x, 0.1, 0.02, 7, np.inf, clip_min=0.0, clip_max=1.0, y=y, rand_init=False)
    attack = build_attack("iter7_xent", logits_fn, Threat(eps=0.1, eps_step=0.02))
    assert max_diff(attack(x, y, tf.constant([3, 4])), expected) < TOLERANCE
