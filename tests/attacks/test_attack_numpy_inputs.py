"""The attack functions' public entry points accept numpy inputs, float32 and numpy's default
float64, also against a model that declares float32 (a SavedModel signature) (issue 12,
fault 10: `spsa_gradient_estimate` failed on numpy inputs)."""

import numpy as np
import pytest
import tensorflow as tf
from attack_test_utils import make_batch, make_conv_model

from lrm_tf.attacks import (
    build_attack,
    fast_gradient_method,
    projected_gradient_descent,
    spsa_attack,
)
from lrm_tf.attacks.spsa import spsa_gradient_estimate, spsa_probe_sum
from lrm_tf.config import SpsaOptions, Threat


@pytest.fixture(scope="module")
def model():
    return make_conv_model()


@pytest.fixture(scope="module")
def signature(model, tmp_path_factory):
    class Exported(tf.Module):
        def __init__(self, net):
            super().__init__()
            self.net = net

        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32, name="images")])
        def serve(self, images):
            return {"logits": self.net(images, training=False)}

    exported = Exported(model)
    path = str(tmp_path_factory.mktemp("sig"))
    tf.saved_model.save(exported, path, signatures={"serving_default": exported.serve})
    loaded = tf.saved_model.load(path)
    signature = loaded.signatures["serving_default"]
    signature.keep_alive = loaded  # the signature's variables live as long as the object
    return signature


def _signs(batch, pairs=3, seed=0):
    rng = np.random.default_rng(seed)
    return np.sign(rng.uniform(-1, 1, (batch, pairs, 8, 8, 1))).astype(np.float32)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_spsa_gradient_estimate_accepts_numpy(model, dtype):
    # Issue 12, fault 10: AttributeError "'tuple' object has no attribute 'is_fully_defined'".
    x, y = make_batch(4)
    signs = _signs(4)
    expected = spsa_gradient_estimate(model, x, y, tf.constant(signs))
    got = spsa_gradient_estimate(model, x.numpy().astype(dtype), y.numpy(), signs.astype(dtype))
    assert got.shape == (4, 8, 8, 1)
    np.testing.assert_allclose(got.numpy(), expected.numpy(), atol=1e-5)
    logits_fn = lambda t: model(t, training=False)  # noqa: E731
    probe = spsa_probe_sum(logits_fn, x.numpy(), y.numpy(), signs, delta=0.01, targeted=False)
    assert probe.shape == (4, 8, 8, 1)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_attack_functions_accept_numpy_against_a_float32_signature(model, signature, dtype):
    x, y = make_batch(4)
    xn, yn, seed = x.numpy().astype(dtype), y.numpy(), np.array([1, 2])
    threat = Threat(eps=0.1, eps_step=0.03, restarts=2)
    runs = {
        "fgsm": lambda m: fast_gradient_method(m, xn, yn, eps=0.1),
        "pgd": lambda m: projected_gradient_descent(m, xn, yn, eps=0.1, eps_step=0.03, steps=2, seed=seed),
        "spsa": lambda m: spsa_attack(m, xn, yn, eps=0.1, steps=2, spsa_samples=4, seed=seed),
        "spsa_gradient": lambda m: spsa_gradient_estimate(m, xn, yn, _signs(4).astype(dtype)),
        "pgd_rand": lambda m: build_attack("pgd2_rand", m, threat)(xn, yn, seed),
        "spsa2": lambda m: build_attack("spsa2", m, threat, SpsaOptions(spsa_samples=4))(xn, yn, seed),
    }
    for name, run in runs.items():
        from_signature, from_keras = run(signature), run(model)
        got, expected = np.asarray(from_signature, np.float64), np.asarray(from_keras, np.float64)
        np.testing.assert_allclose(got, expected, atol=1e-5, err_msg=name)
