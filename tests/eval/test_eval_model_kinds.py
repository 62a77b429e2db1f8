"""Every evaluation entry point accepts what `build_attack` accepts: Keras models, SavedModel
objects (callable or not), their signatures and plain callables (issue 12, fault 10)."""

import keras
import numpy as np
import pytest
import tensorflow as tf
from eval_test_utils import digits_test_images, train_digits_model

from lrm_tf import export
from lrm_tf.attacks import build_attack
from lrm_tf.config import Threat
from lrm_tf.eval import evaluation, transfer

THREAT = Threat(eps=0.15, eps_step=0.0375)
EXAMPLES = 20


@pytest.fixture(scope="module")
def kinds(tmp_path_factory):
    """name -> model: the Keras model and every other form of it."""
    net = train_digits_model()
    root = tmp_path_factory.mktemp("exports")
    export.export_saved_model(net, str(root / "lrm"))
    net.export(str(root / "keras_export"), verbose=False)  # no __call__, a 'serve' endpoint
    tf.saved_model.save(net, str(root / "tf_save"))  # no __call__ either
    lrm = tf.saved_model.load(str(root / "lrm"))
    keras_export = tf.saved_model.load(str(root / "keras_export"))
    tf_save = tf.saved_model.load(str(root / "tf_save"))
    return {
        "keras": net,
        "saved_model": lrm,
        "signature": lrm.signatures["serving_default"],
        "keras_export": keras_export,
        "keras_export_signature": keras_export.signatures["serving_default"],
        "tf_saved_keras": tf_save,
        "callable": lambda x: net(x, training=False),
        "tfsm_layer": keras.layers.TFSMLayer(str(root / "keras_export"), call_endpoint="serve"),
    }


def _data():
    x, y = digits_test_images(EXAMPLES)
    return x.astype(np.float64), y  # numpy's default float: the signatures declare float32


def test_attack_accuracy_accepts_every_kind_of_model(kinds):
    # Issue 12, fault 10: attack_accuracy raised TypeError where build_attack accepted the
    # model; right: the Keras model's accuracy for every form of the same model.
    x, y = _data()
    expected = evaluation.attack_accuracy(kinds["keras"], x, y, "pgd3_xent", THREAT, 8, progress=False)
    assert 0 < expected[0] < 1
    for name, model in kinds.items():
        got = evaluation.attack_accuracy(model, x, y, "pgd3_xent", THREAT, 8, progress=False)
        assert got == expected, name
        x_adv = build_attack("pgd3_xent", model, THREAT)(x, y, [0, 0])
        assert x_adv.shape == x.shape, name


@pytest.mark.parametrize("name", ["signature", "keras_export", "tf_saved_keras", "callable"])
def test_every_evaluation_entry_point_accepts_the_model(kinds, name):
    x, y = _data()
    model, keras_model = kinds[name], kinds["keras"]
    adv, labels = evaluation.adversarial_examples(model, x, y, "fgsm_xent", THREAT, 8)
    expected, _ = evaluation.adversarial_examples(keras_model, x, y, "fgsm_xent", THREAT, 8)
    np.testing.assert_allclose(adv, expected, atol=1e-5)
    point = evaluation.accuracy_point(model, x, y, "fgsm_xent", THREAT, 8)
    expected_point = evaluation.accuracy_point(keras_model, x, y, "fgsm_xent", THREAT, 8)
    assert point["accuracy"] == expected_point["accuracy"]
    results = evaluation.evaluate_attacks(model, x, y, ["clean"], THREAT, 8, log=lambda s: None)
    assert results["clean"]["examples"] == EXAMPLES
    targets = {"keras": keras_model, "same": model}
    matrix = transfer.transfer_matrix({"src": model}, targets, x, y, "fgsm_xent", THREAT)
    assert matrix["white_box"] == [["src", "same"]]
    assert matrix["accuracy"]["src"]["same"] == point["accuracy"]


def test_an_object_that_is_no_model_is_refused_in_one_line():
    x, y = _data()
    with pytest.raises(TypeError, match="model_fn must be a Keras model, a SavedModel"):
        evaluation.attack_accuracy(object(), x, y, "clean", THREAT, progress=False)
