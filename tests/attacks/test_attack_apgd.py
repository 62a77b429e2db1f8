"""APGD (Croce & Hein 2020, arXiv:2003.01690): the DLR losses against hand-worked logits, the
checkpoint schedule, the step halving on scripted losses, batch independence, a graph flat in
the iteration count, and strength against PGD with the same number of iterations."""

import dataclasses
import json
import os
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
from attack_test_utils import make_batch, make_conv_model, make_linear_model

from lrm_tf.attacks import _apgd_core, build_attack, parse_attack
from lrm_tf.attacks.apgd import ApgdOptions, auto_pgd, checkpoints, dlr_loss, dlr_targeted_loss
from lrm_tf.attacks.pgd import proportional_eps_step
from lrm_tf.config import Threat

SEED = tf.constant([3, 4], tf.int64)


def value_and_grad(fn, logits):
    logits = tf.constant(logits, tf.float32)
    with tf.GradientTape() as tape:
        tape.watch(logits)
        value = fn(logits)
    return value.numpy(), tape.gradient(value, logits).numpy()


def test_dlr_values_and_gradients():
    # y = 0 is the argmax: -(4 - 3) / (4 - 2) = -0.5; the gradient of -(z0 - z2) / (z0 - z3).
    value, grad = value_and_grad(lambda z: dlr_loss(tf.constant([0]), z), [[4.0, 1.0, 3.0, 2.0, 0.0]])
    np.testing.assert_allclose(value, [-0.5], rtol=1e-6)
    np.testing.assert_allclose(grad, [[-1 / 4, 0, 1 / 2, -1 / 4, 0]], rtol=1e-6, atol=1e-7)
    # y = 0 is below the argmax z1 = 4: -(1 - 4) / (4 - 2) = 1.5; the gradient of -(z0 - z1) / (z1 - z3).
    value, grad = value_and_grad(lambda z: dlr_loss(tf.constant([0]), z), [[1.0, 4.0, 3.0, 2.0, 0.0]])
    np.testing.assert_allclose(value, [1.5], rtol=1e-6)
    np.testing.assert_allclose(grad, [[-1 / 2, 1 / 2 - 3 / 4, 0, 3 / 4, 0]], rtol=1e-6, atol=1e-7)


def test_dlr_is_shift_and_scale_invariant():
    z = np.array([[0.3, -1.2, 2.0, 0.7]], np.float32)
    labels = tf.constant([3])
    np.testing.assert_allclose(dlr_loss(labels, 7 * z + 5), dlr_loss(labels, z), rtol=1e-5)


def test_targeted_dlr_values_and_gradients():
    # y = 0, t = 4: -(5 - 4) / (5 - (3 + 2) / 2) = -0.4; z0 = z_pi1 is in both numerator and denominator.
    value, grad = value_and_grad(
        lambda z: dlr_targeted_loss(tf.constant([0]), z, tf.constant([4])), [[5.0, 1.0, 3.0, 2.0, 4.0]]
    )
    np.testing.assert_allclose(value, [-0.4], rtol=1e-6)
    d = 2.5
    np.testing.assert_allclose(
        grad, [[-1 / d + 1 / d**2, 0, -0.5 / d**2, -0.5 / d**2, 1 / d]], rtol=1e-5, atol=1e-7
    )


def test_zero_gradient_when_the_label_is_the_third_largest_logit():
    """Documented (fra31/auto-attack#108): -(z_y - z_pi1) / (z_pi1 - z_y) = 1 near such logits."""
    value, grad = value_and_grad(lambda z: dlr_loss(tf.constant([2]), z), [[4.0, 3.0, 2.0, 1.0]])
    np.testing.assert_allclose(value, [1.0], rtol=1e-6)
    np.testing.assert_array_equal(grad, np.zeros_like(grad))


def test_too_few_classes_is_a_clear_error():
    with pytest.raises(ValueError, match="at least 3 classes"):
        dlr_loss(tf.constant([0]), tf.constant([[1.0, 2.0]]))
    with pytest.raises(ValueError, match="at least 4 classes"):
        dlr_targeted_loss(tf.constant([0]), tf.constant([[1.0, 2.0, 3.0]]), tf.constant([1]))
    x, y = make_batch(batch=2)
    for name, classes in (("apgd5_dlr", 2), ("apgd5_t", 3)):
        keras.utils.set_random_seed(0)
        model = keras.Sequential(
            [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(classes)]
        )
        with pytest.raises(ValueError, match=f"at least {classes + 1} classes"):
            build_attack(name, model, Threat(eps=0.1, eps_step=0.1))(x, y % classes, SEED)
    build_attack("apgd5_ce", model, Threat(eps=0.1, eps_step=0.1))(x, y % 3, SEED)  # CE needs 2


def test_names():
    spec = parse_attack("apgd_ce")
    assert spec == dataclasses.replace(parse_attack("apgd100_ce"), name="apgd_ce")
    assert (spec.family, spec.steps, spec.loss, spec.norm, spec.rand_init) == (
        "apgd",
        100,
        "ce",
        "linf",
        True,
    )
    assert parse_attack("apgd_l2_dlr").norm == "l2"
    assert parse_attack("apgd_t").loss == "t" and not parse_attack("apgd_t").targeted
    for bad in ("apgd", "apgd_xent", "apgd20_ll", "apgd0_ce"):
        with pytest.raises(ValueError):
            parse_attack(bad)


def test_checkpoints():
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert checkpoints(1000) == [220, 410, 570, 700, 800, 870, 930, 990]
    assert checkpoints(10) == [2, 3, 4, 5, 6, 7, 8, 9, 10]


def scripted_run(losses, steps, start_loss):
    """One APGD run whose loss at the k-th evaluation after the start is losses(k)."""
    calls = []

    def evaluate(point):
        k = len(calls)
        calls.append(k)
        value = start_loss if k == 0 else losses(k - 1)
        return tf.constant([value], tf.float32), tf.constant([False]), tf.ones_like(point)

    x = tf.fill([1, 3], 0.5)
    result = _apgd_core.run(evaluate, x, x, norm="linf", eps=0.1, steps=steps, clip_min=0.0, clip_max=1.0)
    assert len(calls) == steps + 1  # one forward-backward pass per iteration, plus the start
    return result


@pytest.mark.parametrize("steps", [100, 30])
def test_step_halves_at_every_checkpoint_when_the_loss_never_increases(steps):
    result = scripted_run(lambda i: -float(i), steps, start_loss=1.0)  # condition 1 every time
    np.testing.assert_allclose(result.step, [0.2 / 2 ** len(checkpoints(steps))], rtol=1e-6)
    np.testing.assert_allclose(result.x_best, tf.fill([1, 3], 0.5))  # restarted from the start: x_max


def test_step_stays_when_the_loss_always_increases():
    result = scripted_run(lambda i: float(i), 100, start_loss=-1.0)
    np.testing.assert_allclose(result.step, [0.2])


def test_step_halves_at_every_other_checkpoint_when_the_best_loss_stalls():
    """Increases 5 times out of 6 (condition 1 never holds) without beating the start's loss:
    condition 2 halves the step at the 2nd, 4th, 6th and 8th checkpoints (it is off at the first,
    and after a halving)."""
    result = scripted_run(lambda i: -100.0 if i % 6 == 0 else float(i % 6), 100, start_loss=100.0)
    np.testing.assert_allclose(result.step, [0.2 / 2**4], rtol=1e-6)


def accuracy(model, x, y):
    return float(tf.reduce_mean(tf.cast(tf.argmax(model(x), -1) == y, tf.float32)))


@pytest.mark.parametrize("name", ["apgd10_ce", "apgd10_l2_dlr", "apgd5_t"])
def test_batch_independence_and_constraints(name):
    model = make_conv_model()
    x, _ = make_batch(batch=6)
    y = tf.argmax(model(x), -1)
    eps = 0.1 if "l2" not in name else 0.5
    attack = tf.function(build_attack(name, model, Threat(eps=eps, eps_step=eps)))
    together = attack(x, y, SEED)
    alone = tf.concat([attack(x[i : i + 1], y[i : i + 1], SEED) for i in range(6)], 0)
    np.testing.assert_allclose(together, alone, atol=1e-5)
    delta = tf.reshape(together - x, [6, -1])
    size = tf.reduce_max(tf.abs(delta), 1) if "l2" not in name else tf.norm(delta, axis=1)
    assert float(tf.reduce_max(size)) <= eps * (1 + 1e-5)
    assert 0.0 <= float(tf.reduce_min(together)) and float(tf.reduce_max(together)) <= 1.0
    assert float(tf.reduce_max(size)) > 0.5 * eps  # it moved


def test_misclassified_points_stay_and_fooled_points_are_misclassified():
    model = make_conv_model()
    x, y = make_batch(batch=16)  # random labels: most are misclassified
    clean_wrong = tf.argmax(model(x), -1) != y
    x_adv = build_attack("apgd10_ce", model, Threat(eps=0.05, eps_step=0.05))(x, y, SEED)
    np.testing.assert_array_equal(tf.boolean_mask(x_adv, clean_wrong), tf.boolean_mask(x, clean_wrong))
    y_pred = tf.argmax(model(x), -1)
    x_adv = build_attack("apgd10_ce", model, Threat(eps=0.05, eps_step=0.05))(x, y_pred, SEED)
    assert accuracy(model, x_adv, y_pred) < 1.0


def test_eot_of_a_deterministic_model_is_the_plain_attack():
    model = make_linear_model()
    x, _ = make_batch(batch=4)
    y = tf.argmax(model(x), -1)
    plain = auto_pgd(model, x, y, eps=0.02, steps=5, loss="dlr", seed=SEED)
    eot = auto_pgd(model, x, y, eps=0.02, steps=5, loss="dlr", seed=SEED, eot_iter=3)
    np.testing.assert_allclose(plain, eot, atol=1e-6)
    assert ApgdOptions().n_target_classes == 9 and ApgdOptions().restarts is None


@pytest.mark.parametrize("make_model", [make_linear_model, make_conv_model])
@pytest.mark.parametrize("steps", [10, 20])
def test_apgd_ce_at_least_as_strong_as_pgd(make_model, steps):
    model = make_model()
    x, _ = make_batch(batch=64, seed=5)
    y = tf.argmax(model(x), -1)
    eps = 0.02 if make_model is make_linear_model else 0.03
    pgd = build_attack(f"pgd{steps}_xent", model, Threat(eps=eps, eps_step=proportional_eps_step(eps, steps)))
    apgd = build_attack(f"apgd{steps}_ce", model, Threat(eps=eps, eps_step=eps))
    pgd_acc = accuracy(model, tf.function(pgd)(x, y, SEED), y)
    apgd_acc = accuracy(model, tf.function(apgd)(x, y, SEED), y)
    assert 0 < pgd_acc < 1  # the comparison means something
    assert apgd_acc <= pgd_acc


def op_count(fn):
    specs = (tf.TensorSpec([4, 8, 8, 1]), tf.TensorSpec([4], tf.int64), tf.TensorSpec([2], tf.int64))
    graph = tf.function(fn).get_concrete_function(*specs).graph
    return len(graph.get_operations()) + sum(len(f.node_def) for f in graph.as_graph_def().library.function)


@pytest.mark.parametrize("family", ["apgd{}_ce", "apgd{}_l2_dlr", "apgd{}_t"])
def test_graph_does_not_grow_with_iterations(logits_fn, family):
    def attack(steps):
        return build_attack(family.format(steps), logits_fn, Threat(eps=0.1, eps_step=0.01, restarts=3))

    assert op_count(attack(1000)) <= op_count(attack(10))


def test_mirrored_two_replicas_equal_one_device():
    # The shared script; APGD attacks only clean-correct points, so the labels are the
    # model's own predictions.
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mirrored_attack_script.py")
    names = ["apgd5_ce", "apgd5_l2_dlr", "apgd3_t"]
    result = subprocess.run(
        [sys.executable, script, *names, "--predicted_labels"],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report.pop("replicas") == 2
    for name in names:
        difference, moved = report[name], report[name + "/moved"]
        assert difference <= 1e-5, (name, difference)
        assert moved > 0.01, name
