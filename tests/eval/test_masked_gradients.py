"""Issue 13, criterion 4: on a model whose gradients are masked, PGD reports a high accuracy and
`autoattack` does not: Square finds what the gradient attacks cannot, and the result says so."""

import numpy as np
import tensorflow as tf

from lrm_tf.config import Threat
from lrm_tf.eval import evaluation

W = tf.random.stateless_normal([16, 4], [1, 2])


def masked(x):
    """A linear classifier behind stop_gradient: every input gradient is zero."""
    return tf.matmul(tf.reshape(tf.stop_gradient(tf.cast(x, tf.float32)), [-1, 16]), W)


def test_autoattack_sees_through_masked_gradients():
    x = tf.random.stateless_uniform([8, 4, 4, 1], [3, 4]).numpy()
    y = np.argmax(masked(x).numpy(), 1)
    threat = Threat(eps=0.3, eps_step=0.05)
    results = evaluation.evaluate_attacks(
        masked, x, y, ["clean", "fgsm_xent", "autoattack"], threat, batch_size=8, seed=0, log=lambda *a: None
    )
    assert results["clean"]["accuracy"] == 1.0
    assert results["fgsm_xent"]["accuracy"] == 1.0  # a zero gradient moves nothing
    aa = results["autoattack"]
    assert aa["accuracy"] == 0.0
    stages = {s["attack"]: s["robust_accuracy"] for s in aa["stages"]}
    assert stages["square"] < stages["fab_t"]  # the gradient-free stage did the breaking
    assert any("square" in w.lower() for w in aa["warnings"]), aa["warnings"]
    assert any("zero" in w.lower() and "gradient" in w.lower() for w in aa["warnings"]), aa["warnings"]
