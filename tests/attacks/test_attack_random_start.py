"""Random starts/steps stay in the eps ball and the range; seeds make them reproducible."""

import numpy as np
import pytest
import tensorflow as tf

from lrm_tf.attacks import build_attack, projected_gradient_descent
from lrm_tf.config import SpsaOptions, Threat

EPS = 0.1
L2_EPS = 1.0
# (name, eps, norm): every attack with a random component.
RANDOM_ATTACKS = [
    ("pgd5_xent", EPS, "linf"),
    ("pgd5_cw", EPS, "linf"),
    ("pgd5_l2_xent", L2_EPS, "l2"),
    ("rfgsm_xent", EPS, "linf"),
    ("rfgsm_l2_cw", L2_EPS, "l2"),
    ("r_step_ll", EPS, "linf"),
    ("pgd5_rand", EPS, "linf"),
    ("spsa3", EPS, "linf"),
]


def perturbation_sizes(x_adv, x, norm):
    delta = tf.reshape(x_adv - x, [x.shape[0], -1])
    return tf.norm(delta, ord=np.inf if norm == "linf" else 2, axis=1).numpy()


@pytest.mark.parametrize("name,eps,norm", RANDOM_ATTACKS)
def test_random_attack_in_ball_in_range_and_seeded(logits_fn, batch, name, eps, norm):
    x, y = batch
    attack = tf.function(
        build_attack(
            name, logits_fn, Threat(eps=eps, eps_step=eps / 4, restarts=2), SpsaOptions(spsa_samples=8)
        )
    )
    seed_a, seed_b = tf.constant([1, 2], tf.int64), tf.constant([1, 3], tf.int64)
    first = attack(x, y, seed_a)
    again = attack(x, y, seed_a)
    other = attack(x, y, seed_b)
    for x_adv in (first, other):
        assert np.all(perturbation_sizes(x_adv, x, norm) <= eps * (1 + 1e-5))
        assert float(tf.reduce_min(x_adv)) >= 0.0 and float(tf.reduce_max(x_adv)) <= 1.0
    np.testing.assert_array_equal(first.numpy(), again.numpy())
    assert float(tf.reduce_max(tf.abs(first - other))) > 1e-3


def test_random_start_without_steps_is_uniform_in_ball(logits_fn, batch):
    """PGD-0 returns the random start itself: it spans the L-inf ball (clipped to range)."""
    x = tf.fill([64, 8, 8, 1], 0.5)
    # Distinct images, so that the per-example keys (fingerprints) differ.
    x = x + tf.reshape(tf.range(64, dtype=tf.float32) * 1e-4, [64, 1, 1, 1])
    start = projected_gradient_descent(logits_fn, x, None, eps=EPS, eps_step=0.01, steps=0, seed=[5, 6]) - x
    values = start.numpy().ravel()
    assert values.min() >= -EPS and values.max() <= EPS
    # Uniform on [-eps, eps]: mean ~ 0, std ~ eps / sqrt(3) over 4096 draws.
    assert abs(values.mean()) < 0.01
    assert abs(values.std() - EPS / np.sqrt(3)) < 0.005
    # No two examples share a start.
    flat = start.numpy().reshape(64, -1)
    assert len({row.tobytes() for row in flat}) == 64


def test_draws_keep_their_rank_after_draws_of_other_lengths(logits_fn, batch):
    """The per-example draws are module-level tf.functions with reduce_retracing: once they
    have seen shapes of several lengths their `shape` argument is relaxed to [None]. The
    draws must still have the caller's rank, or APGD's random start cannot reduce over the
    example axes (it failed so when the test order changed)."""
    from lrm_tf.attacks import _common

    x, y = batch
    seed = _common.as_seed((0, 1))
    keys = _common.example_keys(x)
    for shape in ([3], [2, 2], [2, 2, 1], list(x.shape[1:])):  # several lengths: relaxed
        _common.per_example_uniform(seed, keys, shape, -1.0, 1.0)
        _common.per_example_normal(seed, keys, shape)

    @tf.function(input_signature=[tf.TensorSpec([None, *x.shape[1:]], tf.float32)])
    def draws(images):
        k = _common.example_keys(images)
        shape = tf.shape(images)[1:]
        return _common.per_example_uniform(seed, k, shape, -1.0, 1.0), _common.per_example_normal(
            seed, k, shape
        )

    for drawn in draws.get_concrete_function().structured_outputs:
        assert drawn.shape.rank == x.shape.rank
    attack = tf.function(build_attack("apgd10_ce", logits_fn, Threat(eps=EPS, eps_step=EPS / 4)))
    x_adv = attack(x, y, tf.constant([1, 2], tf.int64))
    assert np.all(perturbation_sizes(x_adv, x, "linf") <= EPS * (1 + 1e-5))
