"""The papers' classifiers as Keras functional models.

Every model takes float32 images in [0, 1] of shape (H, W, C) and returns logits; pixel
normalisation is the model's first layer, so attacks and exported SavedModels all work in
that one range. Only built-in layers and the two registered layers of `lrm_tf.layers` are used, so
`model.keras` loads with Keras' safe mode.
"""

from __future__ import annotations

import inspect
import math
import random

import keras
import tensorflow as tf
from keras import layers

from lrm_tf.layers import PerImageStandardization, ZeroPadChannels

# Madry's TF1 models used tf.contrib batch_norm: decay 0.9, epsilon 1e-3 (its default).
_BN = dict(momentum=0.9, epsilon=1e-3)
_LEAK = 0.1  # Madry's CIFAR ResNet uses leaky ReLU with slope 0.1 everywhere.
MIXED_PRECISION = ("mixed_float16", "mixed_bfloat16")
_FLOAT32_LOGITS = "logits_float32"


class _Layers:
    """The layers of one model build, with its options applied: the dtype policy, synchronized
    batch norm, and initializer seeds drawn from the build's own random stream.

    Seeds: Keras gives every unseeded random initializer `random.randint(1, 10**9)` from
    Python's global generator. Drawing from `random.Random(seed)` in the same order gives the
    weights a build after `keras.utils.set_random_seed(seed)` had, without touching any
    global generator.
    """

    def __init__(self, seed, synchronized_bn, dtype):
        self._rng = random.Random(seed)
        self.synchronized_bn, self.dtype = synchronized_bn, dtype

    def seed(self) -> int:
        return self._rng.randint(1, int(1e9))

    def __call__(self, layer_class, *args, **kwargs):
        return layer_class(*args, dtype=self.dtype, **kwargs)

    def batch_norm(self, name=None):
        # With several replicas, batch statistics are all-reduced so that a step on N replicas
        # equals the step on one device with the global batch.
        return self(layers.BatchNormalization, name=name, synchronized=self.synchronized_bn, **_BN)

    def he_conv(self, filters, kernel, stride=1, name=None):
        # Madry's conv init: N(0, sqrt(2 / (k * k * out_filters))), no bias.
        std = math.sqrt(2.0 / (kernel * kernel * filters))
        init = keras.initializers.RandomNormal(stddev=std, seed=self.seed())
        return self(
            layers.Conv2D,
            filters,
            kernel,
            strides=stride,
            padding="same",
            use_bias=False,
            kernel_initializer=init,
            name=name,
        )


def mnist_cnn(
    input_shape=(28, 28, 1), num_classes=10, *, seed=None, synchronized_bn=False, dtype="float32"
) -> keras.Model:
    """Madry et al. 2018's MNIST CNN: conv5x5-32, pool, conv5x5-64, pool, fc-1024, fc.

    No normalisation layers, so `synchronized_bn` changes nothing. Arguments as
    `madry_resnet`'s.
    """
    make = _Layers(seed, synchronized_bn, dtype)
    # One initializer object, one seed for all four layers, as the model always had.
    init = dict(
        kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.1, seed=make.seed()),
        bias_initializer=keras.initializers.Constant(0.1),
    )
    x = inp = keras.Input(input_shape, name="images")
    x = make(layers.Conv2D, 32, 5, padding="same", activation="relu", name="conv1", **init)(x)
    x = make(layers.MaxPooling2D, 2, padding="same")(x)
    x = make(layers.Conv2D, 64, 5, padding="same", activation="relu", name="conv2", **init)(x)
    x = make(layers.MaxPooling2D, 2, padding="same")(x)
    x = make(layers.Flatten)(x)
    x = make(layers.Dense, 1024, activation="relu", name="fc1", **init)(x)
    x = make(layers.Dense, num_classes, name="logits", **init)(x)
    return keras.Model(inp, x, name="mnist_cnn")


def _madry_unit(make, x, in_f, out_f, stride, activate_before_residual, name):
    def bn_relu(t, n):
        t = make.batch_norm(f"{name}_{n}")(t)
        return make(layers.LeakyReLU, _LEAK)(t)

    if activate_before_residual:
        x = bn_relu(x, "bn0")
        shortcut = x
    else:
        shortcut = x
        x = bn_relu(x, "bn0")
    x = make.he_conv(out_f, 3, stride, name=f"{name}_conv1")(x)
    x = bn_relu(x, "bn1")
    x = make.he_conv(out_f, 3, 1, name=f"{name}_conv2")(x)
    if in_f != out_f:
        shortcut = make(layers.AveragePooling2D, stride, stride, padding="valid")(shortcut)
        shortcut = make(ZeroPadChannels, (out_f - in_f) // 2)(shortcut)
    return make(layers.Add)([x, shortcut])


def madry_resnet(
    input_shape=(32, 32, 3),
    num_classes=10,
    depth=32,
    width=1,
    name=None,
    *,
    seed=None,
    synchronized_bn=False,
    dtype="float32",
) -> keras.Model:
    """Madry et al.'s CIFAR ResNet (cifar10_challenge/model.py) with (depth-2)/6 units per stage.

    depth 32 width 1 is the "simple" model (filters 16, 16, 32, 64), depth 32 width 10 the
    "wide" one (WRN-32-10 of the poster, also called WRN-34-10), depth 8 width 1 the ResNet-8
    used for SVHN and depth 28 width 10 the WRN-28-10 of Shafahi et al.

    Args:
      input_shape: (H, W, C) of images in [0, 1].
      num_classes: logits per image.
      depth: 6n + 2 or 6n + 4 (both give n units per stage), at least 8.
      width: filter multiplier of the three stages.
      name: the Keras model name.
      seed: seed of the initializers (None: a fresh random one); global generators are left
        alone.
      synchronized_bn: batch-norm statistics over all replicas (use with several replicas).
      dtype: the layers' Keras dtype policy: 'float32', 'mixed_float16' or 'mixed_bfloat16'.

    Raises:
      ValueError: depth below 8.
    """
    if depth < 8:
        raise ValueError(f"depth must be at least 8, got {depth}")
    make = _Layers(seed, synchronized_bn, dtype)
    # Both depth conventions map to the same stack: 6n+2 (Madry's 32 = 5 units) and the WRN
    # paper's 6n+4, which counts the shortcut convolutions (WRN-28 = 4 units, WRN-34 = 5).
    units = (depth - 2) // 6
    filters = [16, 16 * width, 32 * width, 64 * width]
    x = inp = keras.Input(input_shape, name="images")
    x = make(PerImageStandardization, name="standardize")(x)
    x = make.he_conv(16, 3, name="init_conv")(x)
    for stage, (stride, before) in enumerate(zip([1, 2, 2], [True, False, False])):
        for u in range(units):
            in_f = filters[stage] if u == 0 else filters[stage + 1]
            x = _madry_unit(
                make,
                x,
                in_f,
                filters[stage + 1],
                stride if u == 0 else 1,
                before and u == 0,
                name=f"unit_{stage + 1}_{u}",
            )
    x = make.batch_norm("final_bn")(x)
    x = make(layers.LeakyReLU, _LEAK)(x)
    x = make(layers.GlobalAveragePooling2D)(x)
    init = keras.initializers.VarianceScaling(1.0, "fan_in", "uniform", seed=make.seed())
    x = make(layers.Dense, num_classes, name="logits", kernel_initializer=init)(x)
    return keras.Model(inp, x, name=name or f"madry_resnet_{depth}_{width}")


def resnet18(
    input_shape=(32, 32, 3), num_classes=10, *, seed=None, synchronized_bn=False, dtype="float32"
) -> keras.Model:
    """The standard CIFAR ResNet-18 (He et al. 2016; BasicBlocks [2, 2, 2, 2], 64-512 filters).

    Arguments as `madry_resnet`'s.
    """
    make = _Layers(seed, synchronized_bn, dtype)
    x = inp = keras.Input(input_shape, name="images")
    x = make(PerImageStandardization, name="standardize")(x)
    x = make.he_conv(64, 3, name="init_conv")(x)
    x = make(layers.ReLU)(make.batch_norm("init_bn")(x))
    in_f = 64
    for stage, f in enumerate([64, 128, 256, 512]):
        for b in range(2):
            stride = 2 if (stage > 0 and b == 0) else 1
            n = f"block_{stage + 1}_{b}"
            y = make.he_conv(f, 3, stride, name=f"{n}_conv1")(x)
            y = make(layers.ReLU)(make.batch_norm(f"{n}_bn1")(y))
            y = make.he_conv(f, 3, 1, name=f"{n}_conv2")(y)
            y = make.batch_norm(f"{n}_bn2")(y)
            if stride != 1 or in_f != f:
                x = make.he_conv(f, 1, stride, name=f"{n}_shortcut")(x)
                x = make.batch_norm(f"{n}_shortcut_bn")(x)
            x = make(layers.ReLU)(make(layers.Add)([x, y]))
            in_f = f
    x = make(layers.GlobalAveragePooling2D)(x)
    init = keras.initializers.GlorotUniform(seed=make.seed())  # Keras' default, seeded
    x = make(layers.Dense, num_classes, name="logits", kernel_initializer=init)(x)
    return keras.Model(inp, x, name="resnet18")


def _resnet_simple(input_shape, num_classes, **options):
    return madry_resnet(input_shape, num_classes, depth=32, width=1, name="resnet_simple", **options)


def _resnet8(input_shape, num_classes, **options):
    return madry_resnet(input_shape, num_classes, depth=8, width=1, name="resnet8", **options)


def _wide_resnet(input_shape, num_classes, depth=28, width=10, **options):
    return madry_resnet(
        input_shape, num_classes, depth=depth, width=width, name=f"wide_resnet_{depth}_{width}", **options
    )


# name -> builder(input_shape, num_classes, [model arguments], *, seed, synchronized_bn, dtype)
MODELS = {
    "mnist_cnn": mnist_cnn,
    "resnet_simple": _resnet_simple,
    "resnet18": resnet18,
    "resnet8": _resnet8,
    "wide_resnet": _wide_resnet,
}
_COMMON = ("input_shape", "num_classes", "options", "seed", "synchronized_bn", "dtype")


def model_arguments(name: str) -> tuple:
    """The shape arguments model `name` takes besides the input shape and classes, e.g.
    ('depth', 'width') for wide_resnet and () for resnet18."""
    params = inspect.signature(MODELS[name]).parameters
    return tuple(p for p in params if p not in _COMMON)


def build_model(
    name: str,
    input_shape,
    num_classes: int,
    *,
    seed: int | None = None,
    synchronized_bn: bool = False,
    mixed_precision: str = "none",
    **model_args,
) -> keras.Model:
    """Builds a classifier by name. Nothing global changes: no dtype policy, no reseeding.

    Args:
      name: one of MODELS.
      input_shape: (H, W, C); the model takes float32 images in [0, 1].
      num_classes: C, the logits per image.
      seed: seed of the initial weights (None: random); the same seed gives the same weights.
      synchronized_bn: batch-norm statistics over all replicas (use with several replicas).
      mixed_precision: 'none' (float32), 'mixed_float16' or 'mixed_bfloat16': the layers
        compute in half precision with float32 variables; the logits are cast to float32.
      **model_args: the model's shape arguments (`model_arguments(name)`: depth and width of
        wide_resnet).

    Returns:
      keras.Model, images [batch, H, W, C] -> float32 logits [batch, num_classes].

    Raises:
      ValueError: an unknown model or mixed_precision, or an argument the model does not
        take ("resnet18 takes no argument depth").
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    _check_precision(mixed_precision)
    unknown = sorted(set(model_args) - set(model_arguments(name)))
    if unknown:
        raise ValueError(f"{name} takes no argument {unknown[0]}")
    dtype = "float32" if mixed_precision == "none" else mixed_precision
    net = MODELS[name](
        tuple(input_shape), num_classes, seed=seed, synchronized_bn=synchronized_bn, dtype=dtype, **model_args
    )
    return net if mixed_precision == "none" else _float32_logits(net)


def with_precision(model: keras.Model, mixed_precision: str) -> keras.Model:
    """A copy of `model` whose layers compute in `mixed_precision`, with the same weights.

    Evaluates a model in another precision than it was trained in: a bfloat16-trained model in
    float32 (the check that its robustness is not an artefact of bfloat16 rounding), or a float32
    one in half precision for speed.

    Args:
      model: a Keras functional model (of `build_model`, or loaded from a `.keras` file).
      mixed_precision: 'none' (float32), 'mixed_float16' or 'mixed_bfloat16'.

    Returns:
      keras.Model with the same input, its own copy of the weights (float32 variables), and
      float32 logits.

    Raises:
      ValueError: an unknown mixed_precision.
    """
    _check_precision(mixed_precision)
    policy = "float32" if mixed_precision == "none" else mixed_precision

    def clone(layer):
        keep = isinstance(layer, layers.InputLayer) or layer.name == _FLOAT32_LOGITS
        return layer.__class__.from_config({**layer.get_config(), **({} if keep else {"dtype": policy})})

    copy = keras.models.clone_model(model, clone_function=clone)
    copy.set_weights(model.get_weights())
    if policy != "float32" and copy.layers[-1].name != _FLOAT32_LOGITS:
        copy = _float32_logits(copy)
    return copy


def _check_precision(mixed_precision: str):
    if mixed_precision != "none" and mixed_precision not in MIXED_PRECISION:
        raise ValueError(
            f"unknown mixed_precision {mixed_precision!r}; choose one of none, {', '.join(MIXED_PRECISION)}"
        )


def _float32_logits(net: keras.Model) -> keras.Model:
    # Float32 logits: the cross-entropies, logit penalties and attack losses lose too much in
    # half precision (the Keras mixed-precision guide's advice for the last layer).
    logits = layers.Activation("linear", dtype="float32", name=_FLOAT32_LOGITS)(net.output)
    return keras.Model(net.input, logits, name=net.name)


def decayed_kernels(model: keras.Model):
    """The weights Madry's code puts under weight decay: conv and dense kernels, not biases or BN.

    Args:
      model: a model of `build_model`.

    Returns:
      list of kernel variables.
    """
    return [
        w
        for layer in model.layers
        if isinstance(layer, (layers.Conv2D, layers.Dense))
        for w in [layer.kernel]
    ]


def weight_decay_loss(model: keras.Model, weight_decay: float):
    """TF1 `l2_loss` convention: weight_decay * sum(w^2) / 2 (Madry et al., cifar10_challenge).

    Args:
      model: a model of `build_model`.
      weight_decay: the coefficient wd (0: no decay).

    Returns:
      scalar float32 tensor, wd * sum over `decayed_kernels` of sum(w^2) / 2.
    """
    if not weight_decay:
        return tf.constant(0.0)
    return weight_decay * tf.add_n([tf.nn.l2_loss(k) for k in decayed_kernels(model)])
