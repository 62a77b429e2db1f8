"""model_fn adapters (Keras model, SavedModel signature), unknown batch sizes, XLA steps."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from attack_test_utils import make_batch, make_linear_model

from lrm_tf.attacks import build_attack, projected_gradient_descent
from lrm_tf.config import SpsaOptions, Threat

NAMES = [
    "clean",
    "fgsm_xent",
    "fgsm_l2_cw",
    "rfgsm_xent",
    "pgd3_xent",
    "pgd3_l2_xent",
    "pgd3_cw",
    "step_ll",
    "r_step_rand",
    "iter3_rand",
    "pgd3_ll",
    "spsa2",
    "spsa2_rand",
]


def test_keras_model_is_called_in_inference_mode():
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dropout(0.5), keras.layers.Dense(10)]
    )
    x, y = make_batch(8)
    attack = build_attack("iter3_xent", model, Threat(eps=0.1, eps_step=0.03))
    # With dropout active (training=True) two calls would differ.
    np.testing.assert_array_equal(attack(x, y, [0, 0]).numpy(), attack(x, y, [0, 0]).numpy())


def test_saved_model_signature_as_model_fn(tmp_path):
    model = make_linear_model()

    class Exported(tf.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        @tf.function(input_signature=[tf.TensorSpec([None, 8, 8, 1], tf.float32)])
        def serve(self, images):
            return {"logits": self.model(images, training=False)}

    exported = Exported()
    tf.saved_model.save(exported, str(tmp_path), signatures={"serving_default": exported.serve})
    loaded = tf.saved_model.load(str(tmp_path))  # keeps the signature's variables alive
    signature = loaded.signatures["serving_default"]
    x, y = make_batch(8)
    from_signature = build_attack("iter3_xent", signature, Threat(eps=0.1, eps_step=0.03))(x, y, [1, 1])
    from_keras = build_attack("iter3_xent", model, Threat(eps=0.1, eps_step=0.03))(x, y, [1, 1])
    np.testing.assert_allclose(from_signature.numpy(), from_keras.numpy(), atol=1e-6)


def test_multi_output_model_fn_is_rejected():
    x, y = make_batch(4)
    attack = build_attack("fgsm_xent", lambda x: {"a": x, "b": x}, Threat(eps=0.1, eps_step=0.1))
    with pytest.raises(ValueError, match="only the logits"):
        attack(x, y, [0, 0])


@pytest.mark.parametrize("name", NAMES)
def test_traces_with_unknown_batch_size(logits_fn, name):
    attack = build_attack(
        name, logits_fn, Threat(eps=0.1, eps_step=0.03, restarts=2), SpsaOptions(spsa_samples=4)
    )
    traced = tf.function(
        attack,
        input_signature=[
            tf.TensorSpec([None, 8, 8, 1], tf.float32),
            tf.TensorSpec([None], tf.int64),
            tf.TensorSpec([2], tf.int64),
        ],
    )
    x, y = make_batch(5)
    x_adv = traced(x, y, tf.constant([1, 2], tf.int64))
    assert x_adv.shape == x.shape
    assert float(tf.reduce_max(tf.abs(x_adv - x))) <= 0.1 + 1e-6


def test_xla_compiled_step_matches_plain_step():
    model = make_linear_model()
    x, y = make_batch(8)
    kwargs = dict(eps=0.1, eps_step=0.03, steps=4, seed=[3, 3])
    plain = projected_gradient_descent(model, x, y, **kwargs)
    compiled = tf.function(
        lambda x, y: projected_gradient_descent(model, x, y, attack_xla_step=True, **kwargs)
    )(x, y)
    np.testing.assert_allclose(plain.numpy(), compiled.numpy(), atol=1e-5)


@pytest.mark.parametrize("batch_dim", [0, None])
def test_empty_batch(logits_fn, batch_dim):
    """A replica may get no example of a short last batch: static or run-time batch 0."""
    signature = [
        tf.TensorSpec([batch_dim, 8, 8, 1], tf.float32),
        tf.TensorSpec([batch_dim], tf.int64),
        tf.TensorSpec([2], tf.int64),
    ]
    x, y = tf.zeros([0, 8, 8, 1]), tf.zeros([0], tf.int64)
    for name in ["fgsm_xent", "r_step_rand", "pgd3_l2_xent", "pgd3_ll", "spsa2_rand"]:
        attack = build_attack(
            name, logits_fn, Threat(eps=0.1, eps_step=0.03, restarts=2), SpsaOptions(spsa_samples=4)
        )
        x_adv = tf.function(attack, input_signature=signature)(x, y, tf.constant([1, 2], tf.int64))
        assert x_adv.shape == (0, 8, 8, 1)
