"""Random restarts keep the worst case per example; targeted variants reach their targets."""

import numpy as np
import pytest
import tensorflow as tf
from attack_test_utils import NUM_CLASSES, make_batch, make_linear_model

from lrm_tf.attacks import (
    _common,
    build_attack,
    least_likely_target,
    projected_gradient_descent,
    random_target,
    restart_seed,
    xent_loss,
)
from lrm_tf.config import Threat


@pytest.fixture(scope="module")
def linear_fn():
    model = make_linear_model()
    return lambda x: model(x, training=False)


def test_restarts_keep_worst_case_per_example(linear_fn):
    x, _ = make_batch(64)
    y = tf.argmax(linear_fn(x), 1)  # every example starts correctly classified
    seed = _common.as_seed([1, 2])
    kwargs = dict(eps=0.03, eps_step=0.0075, steps=3, rand_init=True)
    restarts = 4
    combined = projected_gradient_descent(linear_fn, x, y, seed=seed, restarts=restarts, **kwargs).numpy()
    singles = [
        projected_gradient_descent(linear_fn, x, y, seed=restart_seed(seed, r), restarts=1, **kwargs).numpy()
        for r in range(restarts)
    ]
    labels = y.numpy()
    broken = np.array([np.argmax(linear_fn(s), 1) != labels for s in singles])  # [R, B]
    losses = np.array([xent_loss(y, linear_fn(s)).numpy() for s in singles])
    # The test is only informative if the restarts disagree on some examples.
    assert np.sum(broken.any(0) & ~broken.all(0)) >= 2

    combined_broken = np.argmax(linear_fn(combined), 1) != labels
    np.testing.assert_array_equal(combined_broken, broken.any(0))
    for b in range(x.shape[0]):
        chosen = int(np.argmax(broken[:, b])) if broken[:, b].any() else int(np.argmax(losses[:, b]))
        np.testing.assert_allclose(combined[b], singles[chosen][b], atol=1e-6)
    # Restart 0 is the plain attack with the caller's seed.
    plain = projected_gradient_descent(linear_fn, x, y, seed=seed, **kwargs).numpy()
    np.testing.assert_array_equal(plain, singles[0])


def test_restarts_never_raise_accuracy_in_graph_mode(linear_fn):
    x, _ = make_batch(64)
    y = tf.argmax(linear_fn(x), 1)
    seed = tf.constant([5, 6], tf.int64)

    def accuracy(restarts):
        attack = tf.function(
            build_attack("pgd3_cw", linear_fn, Threat(eps=0.03, eps_step=0.01, restarts=restarts))
        )
        return np.mean(np.argmax(linear_fn(attack(x, y, seed)), 1) == y.numpy())

    assert accuracy(5) <= accuracy(1)


def test_least_likely_is_argmin_of_clean_logits():
    logits = tf.constant([[3.0, -1.0, 0.5], [0.0, 2.0, -4.0]])
    np.testing.assert_array_equal(least_likely_target(logits).numpy(), [1, 2])


def test_random_target_is_uniform_over_wrong_classes():
    x, y = make_batch(2000)
    targets = random_target(y, NUM_CLASSES, _common.as_seed([3, 3]), _common.example_keys(x)).numpy()
    assert not np.any(targets == y.numpy())
    offsets = (targets - y.numpy()) % NUM_CLASSES
    counts = np.bincount(offsets, minlength=NUM_CLASSES)
    assert counts[0] == 0
    expected = len(targets) / (NUM_CLASSES - 1)
    assert np.all(np.abs(counts[1:] - expected) < 5 * np.sqrt(expected))
    other_seed = random_target(y, NUM_CLASSES, _common.as_seed([3, 4]), _common.example_keys(x)).numpy()
    assert np.mean(other_seed == targets) < 0.3


@pytest.mark.parametrize(
    "name,eps",
    [
        ("step_ll", 0.5),
        ("step_rand", 0.5),
        ("r_step_ll", 0.8),
        ("r_step_rand", 0.8),
        ("iter10_ll", 0.5),
        ("iter10_rand", 0.5),
        ("pgd10_ll", 0.5),
        ("pgd10_rand", 0.5),
    ],
)
def test_targeted_variants_reach_their_target(linear_fn, name, eps):
    x, y = make_batch(128)
    seed = tf.constant([1, 2])
    attack = build_attack(name, linear_fn, Threat(eps=eps, eps_step=eps / 5))
    x_adv = attack(x, y, seed)
    if name.endswith("_ll"):
        targets = least_likely_target(linear_fn(x)).numpy()
    else:
        targets = random_target(y, NUM_CLASSES, _common.as_seed(seed), _common.example_keys(x)).numpy()
    clean_hits = np.mean(np.argmax(linear_fn(x), 1) == targets)
    adv_hits = np.mean(np.argmax(linear_fn(x_adv), 1) == targets)
    # Chance is 1/C; ask for three times that, and for progress over the clean inputs.
    assert adv_hits >= 3 / NUM_CLASSES
    assert adv_hits > clean_hits + 0.2


def test_untargeted_with_predicted_labels(linear_fn):
    """attack_true_labels=False attacks the clean prediction, as CleverHans does with y=None."""
    x, _ = make_batch(16)
    attack = build_attack("iter5_xent", linear_fn, Threat(eps=0.05, eps_step=0.01, attack_true_labels=False))
    expected = projected_gradient_descent(
        linear_fn, x, None, eps=0.05, eps_step=0.01, steps=5, rand_init=False
    )
    np.testing.assert_array_equal(attack(x, None, [0, 0]).numpy(), expected.numpy())
    with pytest.raises(ValueError, match="y is required"):
        build_attack("iter5_xent", linear_fn, Threat(eps=0.05, eps_step=0.01))(x, None, [0, 0])
