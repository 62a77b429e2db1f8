"""Images outside the input contract (float in [clip_min, clip_max], or uint8 [0, 255]) are
refused by every public entry point with a one-line ValueError, or converted as documented."""

import keras
import numpy as np
import pytest
import tensorflow as tf

from lrm_tf import attacks, config, data, export, training
from lrm_tf.eval import evaluation
from lrm_tf.inputs import check_images

THREAT = config.Threat(eps=0.1, eps_step=0.05)
RNG = np.random.default_rng(0)
IMAGES = RNG.uniform(0, 1, (6, 8, 8, 1)).astype(np.float32)
LABELS = np.arange(6) % 10

BAD_IMAGES = [
    # (images, text the one-line message must contain)
    (IMAGES * 255, "got values in [0"),  # 0-255 floats (the scale of 8 for 8/255)
    (IMAGES * 2 - 1, "got values in [-"),  # [-1, 1] images
    (np.round(IMAGES * 255).astype(np.int64), "got dtype int64"),
    (IMAGES > 0.5, "got dtype bool"),
    (np.where(IMAGES > 0.5, np.nan, IMAGES), "NaN"),
]


@pytest.fixture(scope="module")
def net():
    keras.utils.set_random_seed(0)
    return keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])


def _one_line(error, *texts):
    message = str(error.value)
    assert len(message.splitlines()) == 1, message
    assert "must be float in [0, 1]" in message and "uint8 in [0, 255]" in message
    for text in texts:
        assert text in message, message


ENTRY_POINTS = {
    "build_attack": lambda net, x: attacks.build_attack("fgsm_xent", net, THREAT)(x, LABELS),
    "attack_accuracy": lambda net, x: evaluation.attack_accuracy(
        net, x, LABELS, "clean", THREAT, progress=False
    ),
    "adversarial_examples": lambda net, x: evaluation.adversarial_examples(
        net, x, LABELS, "fgsm_xent", THREAT
    ),
    "evaluate_attacks": lambda net, x: evaluation.evaluate_attacks(
        net, x, LABELS, ["clean"], THREAT, log=str
    ),
}


@pytest.mark.parametrize("entry", sorted(ENTRY_POINTS))
@pytest.mark.parametrize("images,expected", BAD_IMAGES, ids=["0-255", "-1..1", "int64", "bool", "nan"])
def test_public_functions_refuse_images_outside_the_contract(net, entry, images, expected):
    with pytest.raises(ValueError) as info:  # before: attacked and scored in the wrong scale
        ENTRY_POINTS[entry](net, images)
    _one_line(info, expected)


def test_build_attack_refuses_a_linf_budget_beyond_the_input_range(net):
    threat = config.Threat(eps=8.0, eps_step=2.0)  # 8 meant as 8/255
    for name in ("fgsm_xent", "pgd10_xent", "spsa5"):
        with pytest.raises(
            ValueError, match=r"^eps=8: must be at most 1: values are in the \[0, 1\] input scale"
        ):
            attacks.build_attack(name, net, threat)  # before: attacked the whole range
    with pytest.raises(ValueError, match="^eps=8: "):
        evaluation.attack_accuracy(net, IMAGES, LABELS, "pgd10_xent", threat, progress=False)
    assert attacks.build_attack("pgd10_l2_xent", net, config.Threat(eps=1.5, eps_step=0.2)).spec.norm == "l2"


def test_uint8_is_converted_as_documented(net):
    as_uint8 = np.round(IMAGES * 255).astype(np.uint8)
    as_float = data.to_float(as_uint8).numpy()
    np.testing.assert_allclose(check_images(as_uint8), as_float, atol=1e-7)
    attack = attacks.build_attack("fgsm_xent", net, THREAT)
    # before: uint8 was cast to float 0..255 and attacked there
    np.testing.assert_allclose(attack(as_uint8, LABELS), attack(as_float, LABELS), atol=1e-6)
    assert evaluation.attack_accuracy(net, as_uint8, LABELS, "fgsm_xent", THREAT, progress=False) == (
        evaluation.attack_accuracy(net, as_float, LABELS, "fgsm_xent", THREAT, progress=False)
    )


def test_a_threat_of_another_range_is_its_own_contract(net):
    threat = config.Threat(eps=0.2, eps_step=0.1, clip_min=-1.0, clip_max=1.0)
    x = IMAGES * 2 - 1
    assert attacks.build_attack("clean", net, threat)(x, LABELS).shape == x.shape
    with pytest.raises(ValueError, match=r"float in \[-1, 1\]"):
        attacks.build_attack("clean", net, threat)(x * 3, LABELS)


def test_training_refuses_float_arrays(tmp_path):
    from lrm_tf.report.rundir import RunDir

    arrays = data.synthetic_arrays("digits", 8, 4, 0)
    floats = type(arrays)(arrays.info, arrays.x_train / 255.0, arrays.y_train, arrays.x_test, arrays.y_test)
    with pytest.raises(ValueError) as info:  # before: divided by 255 again, trained on ~0
        training.train(lambda: None, config.Objective(), floats, RunDir(str(tmp_path)), config.TrainConfig())
    message = str(info.value)
    assert len(message.splitlines()) == 1 and "x_train" in message and "uint8" in message


def test_served_model_refuses_images_outside_the_input_scale(net, tmp_path):
    export.export_saved_model(net, str(tmp_path / "sm"))
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    assert loaded(tf.constant(IMAGES)).shape == (6, 10)
    for call in (loaded, lambda x: loaded.signatures["serving_default"](images=x)):
        with pytest.raises(tf.errors.InvalidArgumentError, match=r"must be float32 in \[0, 1\]"):
            call(tf.constant(IMAGES * 255))  # before: served logits of 0-255 images


def test_served_model_answers_attack_probes_just_outside_the_range(net, tmp_path):
    """SPSA evaluates x +- delta without clipping (as CleverHans does): the served model answers
    there; only the wrong scale is refused."""
    export.export_saved_model(net, str(tmp_path / "sm"))
    loaded = tf.saved_model.load(str(tmp_path / "sm"))
    probes = tf.constant(IMAGES) + 0.01 * tf.sign(tf.random.stateless_normal(IMAGES.shape, [0, 1]))
    np.testing.assert_allclose(loaded(probes).numpy(), net(probes, training=False).numpy(), atol=1e-5)
