"""SPSA: batched under Keras 3, moves the loss the right way, and follows CleverHans' update.

CleverHans' own SPSA cannot be used as the reference here: `cleverhans.tf2.attacks.spsa`
builds `SPSAAdam(lr=...)`, a subclass of the Keras optimizer, and Keras 3 rejects it with
"ValueError: Argument(s) not recognized: {'lr': 0.01}". So the reference below is CleverHans'
`SPSAAdam._compute_gradients` / `_apply_gradients` / `_project_perturbation` maths written
out in NumPy, one image at a time as CleverHans does, fed with the same random draw.
"""

import numpy as np
import pytest
import tensorflow as tf

from lrm_tf.attacks import _common, build_attack
from lrm_tf.attacks.spsa import draw_signs, initial_perturbation, spsa, spsa_gradient_estimate, spsa_loss
from lrm_tf.config import SpsaOptions, Threat

NUM_CLASSES = 10
SHAPE = (4, 4, 1)
DIM = int(np.prod(SHAPE))


@pytest.fixture(scope="module")
def linear():
    """Linear logits z = flatten(x) W + b: its gradients are known in closed form."""
    rng = np.random.default_rng(0)
    weights = rng.normal(size=(DIM, NUM_CLASSES)).astype(np.float32)
    bias = rng.normal(size=NUM_CLASSES).astype(np.float32)

    def logits_fn(x):
        return tf.matmul(tf.reshape(x, [-1, DIM]), weights) + bias

    def numpy_logits(x):
        return x.reshape(-1, DIM).astype(np.float64) @ weights + bias

    return logits_fn, numpy_logits, weights


def linear_batch(batch=5, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.uniform(0.2, 0.8, (batch,) + SHAPE).astype(np.float32)
    y = rng.integers(0, NUM_CLASSES, batch).astype(np.int64)
    return tf.constant(x), tf.constant(y)


def numpy_margin(logits, label):
    """CleverHans margin_logit_loss for one image's probes: max_{j != y} z_j - z_y."""
    others = np.delete(logits, label, axis=-1)
    return others.max(axis=-1) - logits[..., label]


def cleverhans_reference(numpy_logits, x, y, perturbation, signs_per_step, *, eps, lr, delta):
    """CleverHans projected_optimization + SPSAAdam, untargeted, image by image."""
    out = []
    for b in range(x.shape[0]):
        pert = perturbation[b : b + 1].astype(np.float64)
        m, u = np.zeros_like(pert), np.zeros_like(pert)
        for t, signs in enumerate(signs_per_step, start=1):
            delta_x = delta * np.concatenate([signs[b], -signs[b]], axis=0)  # [2k, ...]
            loss_vals = -numpy_margin(numpy_logits(x[b : b + 1] + pert + delta_x), y[b])
            loss_vals = loss_vals.reshape([-1] + [1] * len(SHAPE))
            grad = np.mean(loss_vals * delta_x, axis=0, keepdims=True) / delta
            m = 0.9 * m + 0.1 * grad
            u = 0.999 * u + 0.001 * grad * grad
            m_hat, u_hat = m / (1 - 0.9**t), u / (1 - 0.999**t)
            pert = pert - lr * m_hat / (np.sqrt(u_hat) + 1e-7)
            pert = np.clip(x[b : b + 1] + np.clip(pert, -eps, eps), 0.0, 1.0) - x[b : b + 1]
        out.append(x[b : b + 1] + pert)
    return np.concatenate(out, axis=0)


def test_spsa_iterations_match_cleverhans_update(linear):
    logits_fn, numpy_logits, _ = linear
    x, y = linear_batch()
    seed = _common.as_seed([7, 8])
    eps, lr, delta, steps, samples, chunk = 0.1, 0.01, 0.01, 3, 8, 4
    ours = spsa(
        logits_fn,
        x,
        y,
        eps=eps,
        steps=steps,
        seed=seed,
        learning_rate=lr,
        delta=delta,
        spsa_samples=samples,
        chunk_samples=chunk,
    )
    # The same draws, regenerated outside the loop: the start, then per step two chunks.
    keys = _common.example_keys(x)
    start = initial_perturbation(x, eps, seed, keys, 0.0, 1.0).numpy()
    signs_per_step = [
        np.concatenate(
            [draw_signs(x, seed, keys, i, c, chunk // 2).numpy() for c in range(samples // chunk)], axis=1
        )
        for i in range(steps)
    ]
    expected = cleverhans_reference(
        numpy_logits, x.numpy(), y.numpy(), start, signs_per_step, eps=eps, lr=lr, delta=delta
    )
    assert float(np.max(np.abs(start))) > 0.05  # a real random start
    assert np.max(np.abs(ours.numpy() - (x.numpy() + start))) > 1e-3  # and real steps
    np.testing.assert_allclose(ours.numpy(), expected, atol=1e-5)


def test_gradient_estimate_scale_and_direction(linear):
    """E[CleverHans estimate] = delta * true gradient; unbiased_gradient=True removes delta."""
    logits_fn, _, weights = linear
    x, y = linear_batch(batch=3)
    delta = 0.01
    signs = tf.sign(tf.random.stateless_uniform([3, 2048] + list(SHAPE), [1, 1], -1.0, 1.0))
    estimate = spsa_gradient_estimate(logits_fn, x, y, signs, delta=delta).numpy()
    unbiased = spsa_gradient_estimate(logits_fn, x, y, signs, delta=delta, unbiased_gradient=True).numpy()
    np.testing.assert_allclose(unbiased * delta, estimate, rtol=1e-4, atol=1e-7)
    # True gradient of the untargeted SPSA loss z_y - max_{j != y} z_j of a linear model.
    with tf.GradientTape() as tape:
        tape.watch(x)
        loss = tf.reduce_sum(spsa_loss(y, logits_fn(x), targeted=False))
    true_grad = tape.gradient(loss, x).numpy().reshape(3, -1)
    unbiased = unbiased.reshape(3, -1)
    for b in range(3):
        cosine = unbiased[b] @ true_grad[b] / np.linalg.norm(unbiased[b]) / np.linalg.norm(true_grad[b])
        assert cosine > 0.9
        ratio = np.linalg.norm(unbiased[b]) / np.linalg.norm(true_grad[b])
        assert 0.8 < ratio < 1.5


@pytest.mark.parametrize("targeted", [False, True])
def test_spsa_moves_the_margin_the_right_way(linear, targeted):
    logits_fn, _, _ = linear
    x, y = linear_batch(batch=6)
    labels = (y + 1) % NUM_CLASSES if targeted else y
    x_adv = spsa(logits_fn, x, labels, eps=0.05, steps=20, seed=[1, 1], spsa_samples=32, targeted=targeted)
    before = spsa_loss(labels, logits_fn(x), targeted).numpy()
    after = spsa_loss(labels, logits_fn(x_adv), targeted).numpy()
    assert np.all(after < before - 0.05)  # SPSA minimises its loss, for every example


def test_spsa_batched_equals_one_image_at_a_time(linear):
    """Batching changes nothing: each example keeps its own random stream."""
    logits_fn, _, _ = linear
    x, y = linear_batch(batch=4)
    batched = spsa(logits_fn, x, y, eps=0.05, steps=4, seed=[2, 9], spsa_samples=16)
    for b in range(4):
        single = spsa(logits_fn, x[b : b + 1], y[b : b + 1], eps=0.05, steps=4, seed=[2, 9], spsa_samples=16)
        np.testing.assert_allclose(batched[b : b + 1].numpy(), single.numpy(), atol=1e-6)


def test_spsa_early_stop_freezes_examples(linear):
    logits_fn, _, _ = linear
    x, y = linear_batch(batch=4)
    kwargs = dict(eps=0.05, seed=[4, 4], spsa_samples=16)
    one_step = spsa(logits_fn, x, y, steps=1, **kwargs)
    # Every loss is below a huge threshold, so each example stops after its first update.
    stopped = spsa(logits_fn, x, y, steps=6, early_stop_loss_threshold=1e9, **kwargs)
    full = spsa(logits_fn, x, y, steps=6, **kwargs)
    np.testing.assert_array_equal(stopped.numpy(), one_step.numpy())
    assert np.max(np.abs(full.numpy() - one_step.numpy())) > 1e-3


def test_spsa_on_keras_conv_model_batch(conv_model, batch):
    """spsa100-style attack on a Keras 3 model, batch of 16, eagerly and in a tf.function."""
    x, y = batch
    attack = build_attack(
        "spsa4",
        conv_model,
        Threat(eps=0.05, eps_step=0.01),
        SpsaOptions(spsa_samples=16, spsa_chunk_samples=8),
    )
    eager = attack(x, y, tf.constant([0, 1]))
    graph = tf.function(attack)(x, y, tf.constant([0, 1]))
    np.testing.assert_allclose(eager.numpy(), graph.numpy(), atol=1e-5)
    assert eager.shape == x.shape
    assert float(tf.reduce_max(tf.abs(eager - x))) <= 0.05 + 1e-6
    margin_before = spsa_loss(y, conv_model(x), False)
    margin_after = spsa_loss(y, conv_model(eager), False)
    assert float(tf.reduce_mean(margin_after)) < float(tf.reduce_mean(margin_before))
