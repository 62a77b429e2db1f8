"""The papers' classifiers as Keras functional models.

Every model takes float32 images in [0, 1] of shape (H, W, C) and returns logits; pixel
normalisation is the model's first layer, so attacks and exported SavedModels all work in
that one range. Only built-in layers and the two registered layers below are used, so
`model.keras` loads with Keras' safe mode.
"""

from __future__ import annotations

import math

import keras
import tensorflow as tf
from keras import layers

# Madry's TF1 models used tf.contrib batch_norm: decay 0.9, epsilon 1e-3 (its default).
_BN = dict(momentum=0.9, epsilon=1e-3)
# Set by build_model: with several replicas, batch statistics are all-reduced so that a step
# on N replicas equals the step on one device with the global batch.
_SYNC_BN = [False]


def _batch_norm(name=None):
    return layers.BatchNormalization(name=name, synchronized=_SYNC_BN[0], **_BN)
_LEAK = 0.1  # Madry's CIFAR ResNet uses leaky ReLU with slope 0.1 everywhere.


@keras.saving.register_keras_serializable(package="lrm_tf")
class PerImageStandardization(layers.Layer):
    """tf.image.per_image_standardization, the input normalisation of Madry's CIFAR model."""

    def call(self, x):
        return tf.image.per_image_standardization(x)


@keras.saving.register_keras_serializable(package="lrm_tf")
class ZeroPadChannels(layers.Layer):
    """Pads channels with zeros on both sides: the parameter-free shortcut of Madry's ResNet."""

    def __init__(self, pad: int, **kwargs):
        super().__init__(**kwargs)
        self.pad = pad

    def call(self, x):
        return tf.pad(x, [[0, 0], [0, 0], [0, 0], [self.pad, self.pad]])

    def get_config(self):
        return {**super().get_config(), "pad": self.pad}


def _he_conv(filters, kernel, stride=1, name=None):
    # Madry's conv init: N(0, sqrt(2 / (k * k * out_filters))), no bias.
    std = math.sqrt(2.0 / (kernel * kernel * filters))
    return layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                         kernel_initializer=keras.initializers.RandomNormal(stddev=std), name=name)


def mnist_cnn(input_shape=(28, 28, 1), num_classes=10, **_) -> keras.Model:
    """Madry et al.'s MNIST CNN: conv5x5-32, pool, conv5x5-64, pool, fc-1024, fc (no normalisation)."""
    init = dict(kernel_initializer=keras.initializers.TruncatedNormal(stddev=0.1),
                bias_initializer=keras.initializers.Constant(0.1))
    x = inp = keras.Input(input_shape, name="images")
    x = layers.Conv2D(32, 5, padding="same", activation="relu", name="conv1", **init)(x)
    x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.Conv2D(64, 5, padding="same", activation="relu", name="conv2", **init)(x)
    x = layers.MaxPooling2D(2, padding="same")(x)
    x = layers.Flatten()(x)
    x = layers.Dense(1024, activation="relu", name="fc1", **init)(x)
    x = layers.Dense(num_classes, name="logits", **init)(x)
    return keras.Model(inp, x, name="mnist_cnn")


def _madry_unit(x, in_f, out_f, stride, activate_before_residual, name):
    def bn_relu(t, n):
        t = _batch_norm(f"{name}_{n}")(t)
        return layers.LeakyReLU(_LEAK)(t)
    if activate_before_residual:
        x = bn_relu(x, "bn0")
        shortcut = x
    else:
        shortcut = x
        x = bn_relu(x, "bn0")
    x = _he_conv(out_f, 3, stride, name=f"{name}_conv1")(x)
    x = bn_relu(x, "bn1")
    x = _he_conv(out_f, 3, 1, name=f"{name}_conv2")(x)
    if in_f != out_f:
        shortcut = layers.AveragePooling2D(stride, stride, padding="valid")(shortcut)
        shortcut = ZeroPadChannels((out_f - in_f) // 2)(shortcut)
    return layers.Add()([x, shortcut])


def madry_resnet(input_shape=(32, 32, 3), num_classes=10, depth=32, width=1, name=None,
                 **_) -> keras.Model:
    """Madry et al.'s CIFAR ResNet (cifar10_challenge/model.py) with (depth-2)/6 units per stage.

    depth 32 width 1 is the "simple" model (filters 16, 16, 32, 64), depth 32 width 10 the
    "wide" one (WRN-32-10 of the poster, also called WRN-34-10), depth 8 width 1 the ResNet-8 used for SVHN and
    depth 28 width 10 the WRN-28-10 of Shafahi et al.
    """
    if depth < 8:
        raise ValueError(f"depth must be at least 8, got {depth}")
    # Both depth conventions map to the same stack: 6n+2 (Madry's 32 = 5 units) and the WRN
    # paper's 6n+4, which counts the shortcut convolutions (WRN-28 = 4 units, WRN-34 = 5).
    units = (depth - 2) // 6
    filters = [16, 16 * width, 32 * width, 64 * width]
    x = inp = keras.Input(input_shape, name="images")
    x = PerImageStandardization(name="standardize")(x)
    x = _he_conv(16, 3, name="init_conv")(x)
    for stage, (stride, before) in enumerate(zip([1, 2, 2], [True, False, False])):
        for u in range(units):
            in_f = filters[stage] if u == 0 else filters[stage + 1]
            x = _madry_unit(x, in_f, filters[stage + 1], stride if u == 0 else 1,
                            before and u == 0, name=f"unit_{stage + 1}_{u}")
    x = _batch_norm("final_bn")(x)
    x = layers.LeakyReLU(_LEAK)(x)
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(num_classes, name="logits",
                     kernel_initializer=keras.initializers.VarianceScaling(1.0, "fan_in", "uniform"))(x)
    return keras.Model(inp, x, name=name or f"madry_resnet_{depth}_{width}")


def resnet18(input_shape=(32, 32, 3), num_classes=10, **_) -> keras.Model:
    """The standard CIFAR ResNet-18 (He et al. 2016; BasicBlocks [2, 2, 2, 2], 64-512 filters)."""
    x = inp = keras.Input(input_shape, name="images")
    x = PerImageStandardization(name="standardize")(x)
    x = _he_conv(64, 3, name="init_conv")(x)
    x = layers.ReLU()(_batch_norm("init_bn")(x))
    in_f = 64
    for stage, f in enumerate([64, 128, 256, 512]):
        for b in range(2):
            stride = 2 if (stage > 0 and b == 0) else 1
            n = f"block_{stage + 1}_{b}"
            y = _he_conv(f, 3, stride, name=f"{n}_conv1")(x)
            y = layers.ReLU()(_batch_norm(f"{n}_bn1")(y))
            y = _he_conv(f, 3, 1, name=f"{n}_conv2")(y)
            y = _batch_norm(f"{n}_bn2")(y)
            if stride != 1 or in_f != f:
                x = _he_conv(f, 1, stride, name=f"{n}_shortcut")(x)
                x = _batch_norm(f"{n}_shortcut_bn")(x)
            x = layers.ReLU()(layers.Add()([x, y]))
            in_f = f
    x = layers.GlobalAveragePooling2D()(x)
    x = layers.Dense(num_classes, name="logits")(x)
    return keras.Model(inp, x, name="resnet18")


def _resnet_simple(**kw):
    return madry_resnet(depth=32, width=1, name="resnet_simple",
                        **{k: v for k, v in kw.items() if k not in ("depth", "width")})


def _resnet8(**kw):
    return madry_resnet(depth=8, width=1, name="resnet8",
                        **{k: v for k, v in kw.items() if k not in ("depth", "width")})


def _wide_resnet(depth=28, width=10, **kw):
    return madry_resnet(depth=depth, width=width, name=f"wide_resnet_{depth}_{width}", **kw)


MODELS = {
    "mnist_cnn": mnist_cnn,
    "resnet_simple": _resnet_simple,
    "resnet18": resnet18,
    "resnet8": _resnet8,
    "wide_resnet": _wide_resnet,
}


MIXED_PRECISION = ("mixed_float16", "mixed_bfloat16")


def build_model(name: str, input_shape, num_classes: int, depth: int = 28, width: int = 10,
                seed: int | None = None, synchronized_bn: bool = False,
                mixed_precision: str = "none") -> keras.Model:
    """Builds a model by name; `depth`/`width` are read by `wide_resnet` only.

    synchronized_bn: batch-norm statistics over all replicas (use with several replicas).
    mixed_precision: '' (float32), 'mixed_float16' or 'mixed_bfloat16': layers compute in half
    precision with float32 variables; the logits are cast back to float32.
    """
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; choose one of {', '.join(MODELS)}")
    if mixed_precision == "none":
        mixed_precision = ""
    if mixed_precision and mixed_precision not in MIXED_PRECISION:
        raise ValueError(f"unknown mixed_precision {mixed_precision!r}; choose one of "
                         f"{', '.join(MIXED_PRECISION)} or ''")
    if seed is not None:
        keras.utils.set_random_seed(seed)
    _SYNC_BN[0] = synchronized_bn
    previous_policy = keras.config.dtype_policy()
    if mixed_precision:
        keras.config.set_dtype_policy(mixed_precision)
    try:
        net = MODELS[name](input_shape=tuple(input_shape), num_classes=num_classes,
                           depth=depth, width=width)
    finally:
        _SYNC_BN[0] = False
        keras.config.set_dtype_policy(previous_policy)
    if not mixed_precision:
        return net
    # Float32 logits: the cross-entropies, logit penalties and attack losses lose too much in
    # half precision (the Keras mixed-precision guide's advice for the last layer).
    logits = layers.Activation("linear", dtype="float32", name="logits_float32")(net.output)
    return keras.Model(net.input, logits, name=net.name)


def decayed_kernels(model: keras.Model):
    """The weights Madry's code puts under weight decay: conv and dense kernels, not biases or BN."""
    return [w for layer in model.layers if isinstance(layer, (layers.Conv2D, layers.Dense))
            for w in [layer.kernel]]


def weight_decay_loss(model: keras.Model, weight_decay: float):
    """TF1 `l2_loss` convention: weight_decay * sum(w^2) / 2 (Madry et al., cifar10_challenge)."""
    if not weight_decay:
        return tf.constant(0.0)
    return weight_decay * tf.add_n([tf.nn.l2_loss(k) for k in decayed_kernels(model)])
