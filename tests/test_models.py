import numpy as np
import pytest

from lrm_tf import models

# Parameter counts (trainable + batch-norm moving statistics), recorded in BUILD_NOTES.md.
EXPECTED = [
    ("mnist_cnn", (28, 28, 1), {}, 3_274_634),
    ("resnet_simple", (32, 32, 3), {}, 466_426),  # Madry's "simple" CIFAR ResNet: ~466k
    ("resnet8", (32, 32, 3), {}, 75_770),
    ("resnet18", (32, 32, 3), {}, 11_183_562),
    ("wide_resnet", (32, 32, 3), {"depth": 28, "width": 10}, 36_238_586),
    ("wide_resnet", (32, 32, 3), {"depth": 32, "width": 10}, 45_924_346),  # Madry's wide model
]


@pytest.mark.parametrize("name,shape,kw,count", EXPECTED)
def test_parameter_counts(name, shape, kw, count):
    m = models.build_model(name, shape, 10, **kw)
    assert m.count_params() == count
    assert m.output_shape == (None, 10)


def test_normalisation_is_inside_the_model():
    m = models.build_model("resnet_simple", (32, 32, 3), 10, seed=0)
    assert m.layers[1].name == "standardize"
    x = np.random.RandomState(0).rand(2, 32, 32, 3).astype("float32")
    # Per-image standardisation makes the logits invariant to a global affine change of an image.
    np.testing.assert_allclose(m(x), m(0.5 * x + 0.25), atol=1e-4)


def test_weight_decay_is_tf1_l2_loss_of_kernels():
    m = models.build_model("mnist_cnn", (8, 8, 1), 10, seed=0)
    kernels = models.decayed_kernels(m)
    assert len(kernels) == 4  # two convs, two dense; biases excluded
    expected = 2e-4 * sum(float((np.asarray(k) ** 2).sum()) / 2 for k in kernels)
    assert float(models.weight_decay_loss(m, 2e-4)) == pytest.approx(expected, rel=1e-5)


def test_unknown_model():
    with pytest.raises(ValueError, match="choose one of"):
        models.build_model("vgg", (32, 32, 3), 10)


def test_argument_the_model_does_not_take_is_rejected():
    with pytest.raises(ValueError, match="resnet18 takes no argument depth"):
        models.build_model("resnet18", (32, 32, 3), 10, depth=50)
    with pytest.raises(ValueError, match="wide_resnet takes no argument filters"):
        models.build_model("wide_resnet", (32, 32, 3), 10, filters=3)
    assert models.model_arguments("wide_resnet") == ("depth", "width")
    assert models.model_arguments("resnet8") == ()


def test_build_leaves_global_state_alone():
    """Same seed, same weights, without reseeding the global generators or changing the
    global dtype policy; synchronized batch norm is per build."""
    import random

    import keras

    random.seed(11)
    expected_draw = random.random()
    random.seed(11)
    a = models.build_model(
        "resnet8", (32, 32, 3), 10, seed=4, synchronized_bn=True, mixed_precision="mixed_bfloat16"
    )
    assert random.random() == expected_draw
    assert keras.config.dtype_policy().name == "float32"
    b = models.build_model("resnet8", (32, 32, 3), 10, seed=4)
    for x, y in zip(a.weights, b.weights):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    bns = lambda m: [l for l in m.layers if isinstance(l, keras.layers.BatchNormalization)]
    assert bns(a) and all(l.synchronized for l in bns(a))
    assert not any(l.synchronized for l in bns(b))
