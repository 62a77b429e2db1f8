"""PyTorch copies of lrm_tf's models, with the Keras weights: the one place the benchmarks
that compare against PyTorch tools get their torch networks from.

  torch_copy(keras_model)   a torch.nn.Module (NCHW float input in [0, 1]) whose logits equal
                            the Keras model's (NHWC input): `mnist_cnn` and any stack of
                            Conv2D / MaxPooling2D / Flatten / Dense / ReLU layers
                            (`sequential_copy`), or the Madry CIFAR ResNets of
                            `lrm_tf.models.madry_resnet` (`resnet_simple`, `resnet8`,
                            `wide_resnet`; `MadryResNet`).
  sgd(net, ...)             torch.optim.SGD doing what lrm_tf's trainer does: momentum, and
                            weight decay wd * sum(w^2) / 2 on conv and dense kernels only.
  train_step, pgd           a training step, and PGD as lrm_tf's training attack runs it
                            (L-inf, random start, model in inference mode, CleverHans' order
                            of clipping), for `bench_train.py --torch`.

Details kept equal to Keras/TF (each checked by `python benchmarks/torch_models.py`):
  * tf.image.per_image_standardization: (x - mean) / max(std, 1 / sqrt(H*W*C)), mean and
    population std over each image's H, W and C;
  * Keras/TF 'same' padding: the padding total is split with the extra row/column at the
    bottom/right (stride-2 3x3 convolutions on even sizes pad (0, 1)); torch's `padding=`
    is symmetric, so asymmetric cases use F.pad;
  * BatchNormalization: Keras' epsilon, moving statistics in inference mode; in training
    mode batch statistics, and the moving statistics updated as Keras does,
    moving = momentum * moving + (1 - momentum) * batch, with the biased batch variance
    (torch's own update uses momentum' = 1 - momentum and the unbiased variance; corrected);
  * LeakyReLU slope 0.1; ZeroPadChannels (zeros on both sides of the channel axis); Keras
    flattens NHWC, torch holds NCHW: flatten after a permute.

Self-check (peers venv, which has torch and sees lrm_tf's TensorFlow):

    ../peers/bin/python benchmarks/torch_models.py --local_data ../shared/data/cifar10-jpeg
    ../peers/bin/python benchmarks/torch_models.py --local_data ../shared/data/cifar10-jpeg --run /tmp/rs_tiny

compares a fresh `resnet_simple` (its batch-norm moving statistics, scales and offsets set to
random non-trivial values) with its copy on real CIFAR-10 test images: logits in inference
mode, logits and moving statistics after a training-mode forward, and the weights after two
SGD steps of lrm_tf's trainer and of `sgd` + `train_step`; with --run, the run's model too.
Exits 1 when a difference exceeds --tolerance (1e-4).
"""

from __future__ import annotations

import math
import os
import re
import sys

import torch
import torch.nn.functional as F
from torch import nn

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:
    sys.path.insert(0, REPO)  # lrm_tf from this checkout, whatever the environment


# --------------------------------------------------------------------------- layers


def tf_cpu_sum(v):
    """Row sums of a float32 [B, n] tensor in the order of TensorFlow's CPU reduce_sum (Eigen's
    inner-most reduction with 8-lane AVX packets: four packet accumulators over blocks of 32,
    the remaining packets, the lanes folded in halves, the scalar remainder), so bit for bit
    its result for n <= 8192 (beyond, Eigen splits the row into a tree; not emulated). Checked
    against TF on this machine by `tf_cpu_sum_matches` before use. No gradient."""
    rows, n = v.shape
    if n > 8192:
        raise ValueError(f"rows of {n} > 8192 values: TF sums them as a tree, not emulated")
    blocks, packets = n // 32, n // 8
    acc = v.new_zeros(rows, 4, 8)
    stacked = v[:, : 32 * blocks].reshape(rows, blocks, 4, 8)
    for j in range(blocks):
        acc += stacked[:, j]
    p = acc[:, 0] + acc[:, 1]
    p = p + acc[:, 2]
    p = p + acc[:, 3]
    for j in range(4 * blocks, packets):
        p = p + v[:, 8 * j : 8 * j + 8]
    p = p[:, :4] + p[:, 4:]
    p = p[:, :2] + p[:, 2:]
    total = p[:, 0] + p[:, 1]
    rest = v.new_zeros(rows)
    for j in range(8 * packets, n):
        rest = rest + v[:, j]
    return rest + total


def tf_cpu_sum_matches(n, seed=0):
    """Whether `tf_cpu_sum` gives TensorFlow's reduce_sum bit for bit on rows of n values here
    (it depends on the packet width TensorFlow's Eigen was built with)."""
    import numpy as np
    import tensorflow as tf

    if n > 8192:
        return False
    v = np.random.default_rng(seed).random((16, n), dtype=np.float32)
    return bool(np.array_equal(tf.reduce_sum(v, axis=1).numpy(), tf_cpu_sum(torch.from_numpy(v)).numpy()))


class PerImageStandardization(nn.Module):
    """tf.image.per_image_standardization on NCHW: (x - mean) / max(std, 1/sqrt(N)), mean and
    population std over each image's N = H*W*C values.

    tf_sums: the mean and variance take the values TensorFlow's float32 sums give (`tf_cpu_sum`
    over the NHWC order, exact to the bit; TF's own sums are ~10 ulp from exact, enough to move
    a trained ResNet's logits by 3e-4), with torch's exact-math gradient through them (the
    difference is added as a constant). False: torch's var_mean alone, what a PyTorch user
    writes (bench_train.py --torch). floor: TF's rsqrt(N) (default 1/sqrt(N) in Python)."""

    def __init__(self, tf_sums=False, floor=None):
        super().__init__()
        self.tf_sums, self.floor = tf_sums, floor

    def forward(self, x):
        var, mean = torch.var_mean(x, dim=(1, 2, 3), keepdim=True, unbiased=False)
        n = x[0].numel()
        if self.tf_sums:
            with torch.no_grad():
                flat = x.detach().permute(0, 2, 3, 1).reshape(x.shape[0], n)  # TF's memory order
                tf_mean = (tf_cpu_sum(flat) / n).view(-1, 1, 1, 1)
                tf_var = (tf_cpu_sum(torch.square(flat - tf_mean.view(-1, 1))) / n).view(-1, 1, 1, 1)
            # Exact: a - b is exact for a, b within a factor 2 (Sterbenz), so b + (a - b) == a.
            mean = mean + (tf_mean - mean).detach()
            var = var + (tf_var - var).detach()
            # torch 2.13's float32 sqrt on this CPU is 1 ulp off for ~14% of values; float32 of
            # the float64 sqrt is correctly rounded, as TF's is.
            std = torch.sqrt(var.double()).float()
        else:
            std = torch.sqrt(var)
        floor = self.floor if self.floor is not None else 1.0 / math.sqrt(n)
        return (x - mean) / torch.clamp(std, min=floor)


class ZeroPadChannels(nn.Module):
    """lrm_tf.layers.ZeroPadChannels on NCHW: `pad` zero channels before and after."""

    def __init__(self, pad):
        super().__init__()
        self.pad = pad

    def forward(self, x):
        return F.pad(x, (0, 0, 0, 0, self.pad, self.pad))


def same_padding(size, kernel, stride):
    """TF's 'same' padding of one spatial axis: (before, after), the extra one after."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


class SameConv2d(nn.Conv2d):
    """nn.Conv2d with Keras' padding='same' (asymmetric where TF pads asymmetrically)."""

    def __init__(self, in_channels, out_channels, kernel, stride=1, bias=False):
        super().__init__(in_channels, out_channels, kernel, stride, padding=0, bias=bias)

    def forward(self, x):
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        top, bottom = same_padding(x.shape[2], kh, sh)
        left, right = same_padding(x.shape[3], kw, sw)
        if top == bottom and left == right:  # symmetric: let the convolution pad
            return F.conv2d(x, self.weight, self.bias, self.stride, (top, left))
        return F.conv2d(F.pad(x, (left, right, top, bottom)), self.weight, self.bias, self.stride)


class KerasBatchNorm2d(nn.BatchNorm2d):
    """nn.BatchNorm2d with Keras' conventions: `keras_momentum` (Keras' 0.9 is torch's 0.1)
    and moving variance updated with the biased batch variance, as Keras does.

    Training mode runs torch's fused batch norm (which updates the moving variance with the
    unbiased batch variance v * n / (n - 1)) and then removes the difference:
    new - m * v_unbiased / n, where m * v_unbiased = new - (1 - m) * old."""

    def __init__(self, channels, epsilon=1e-3, keras_momentum=0.99):
        super().__init__(channels, eps=epsilon, momentum=1.0 - keras_momentum)

    def forward(self, x):
        if not self.training:
            return F.batch_norm(
                x, self.running_mean, self.running_var, self.weight, self.bias, False, 0.0, self.eps
            )
        # Copies: the backward pass keeps the statistics it was given, so no in-place change.
        mean, var = self.running_mean.clone(), self.running_var.clone()
        out = F.batch_norm(x, mean, var, self.weight, self.bias, True, self.momentum, self.eps)
        n = x.numel() // x.shape[1]
        with torch.no_grad():
            self.running_mean.copy_(mean)
            self.running_var.copy_(var - (var - (1.0 - self.momentum) * self.running_var) / n)
        return out


def _copy_bn(bn, layer):
    import keras

    if not isinstance(layer, keras.layers.BatchNormalization) or layer.axis not in (-1, 3, [3], [-1]):
        raise ValueError(f"{layer.name}: expected a channels-last BatchNormalization")
    if not (layer.scale and layer.center):
        raise ValueError(f"{layer.name}: scale and center expected")
    gamma, beta, mean, var = (torch.from_numpy(w.copy()) for w in layer.get_weights())
    with torch.no_grad():
        bn.weight.copy_(gamma)
        bn.bias.copy_(beta)
        bn.running_mean.copy_(mean)
        bn.running_var.copy_(var)


def _copy_conv(conv, layer):
    weights = layer.get_weights()
    with torch.no_grad():
        conv.weight.copy_(torch.from_numpy(weights[0].transpose(3, 2, 0, 1).copy()))  # HWIO -> OIHW
        if conv.bias is not None:
            conv.bias.copy_(torch.from_numpy(weights[1].copy()))


def _copy_dense(dense, layer):
    weights = layer.get_weights()
    with torch.no_grad():
        dense.weight.copy_(torch.from_numpy(weights[0].T.copy()))
        if dense.bias is not None:
            dense.bias.copy_(torch.from_numpy(weights[1].copy()))


# --------------------------------------------------------------------------- Madry's ResNet


class MadryUnit(nn.Module):
    """lrm_tf.models._madry_unit: BN-LReLU-conv3x3(stride)-BN-LReLU-conv3x3 plus a shortcut
    (average pool and zero-padded channels when the width changes)."""

    def __init__(self, in_f, out_f, stride, activate_before_residual, bn):
        super().__init__()
        self.before = activate_before_residual
        self.bn0, self.conv1 = bn(in_f), SameConv2d(in_f, out_f, 3, stride)
        self.bn1, self.conv2 = bn(out_f), SameConv2d(out_f, out_f, 3, 1)
        self.shortcut = (
            nn.Sequential(nn.AvgPool2d(stride, stride), ZeroPadChannels((out_f - in_f) // 2))
            if in_f != out_f
            else nn.Identity()
        )

    def forward(self, x):
        a = F.leaky_relu(self.bn0(x), 0.1)
        shortcut = a if self.before else x
        y = self.conv2(F.leaky_relu(self.bn1(self.conv1(a)), 0.1))
        return y + self.shortcut(shortcut)


class MadryResNet(nn.Module):
    """lrm_tf.models.madry_resnet in PyTorch (NCHW): standardise, conv3x3-16, three stages of
    `units` MadryUnits (strides 1, 2, 2), BN, LReLU, global average pool, dense."""

    def __init__(
        self, units, filters, strides, num_classes, epsilon=1e-3, keras_momentum=0.9, standardize=None
    ):
        super().__init__()

        def bn(c):
            return KerasBatchNorm2d(c, epsilon, keras_momentum)

        self.standardize = standardize or PerImageStandardization()
        self.init_conv = SameConv2d(3, filters[0], 3, 1)
        self.units = nn.ModuleList()
        for stage, stride in enumerate(strides):
            for u in range(units):
                in_f = filters[stage] if u == 0 else filters[stage + 1]
                first = stride if u == 0 else 1
                self.units.append(MadryUnit(in_f, filters[stage + 1], first, stage == 0 and u == 0, bn))
        self.final_bn = bn(filters[-1])
        self.logits = nn.Linear(filters[-1], num_classes)

    def forward(self, x):
        x = self.init_conv(self.standardize(x))
        for unit in self.units:
            x = unit(x)
        x = F.leaky_relu(self.final_bn(x), 0.1)
        return self.logits(x.mean(dim=(2, 3)))


def madry_resnet_copy(keras_model, tf_sums=True):
    """A MadryResNet with the weights and batch-norm statistics of a `madry_resnet` model
    (float32 only: a mixed-precision model has a `logits_float32` layer and is refused).

    tf_sums: standardise with TensorFlow's float32 sums (`PerImageStandardization`), when
    `tf_cpu_sum` reproduces them on this machine (else a warning and torch's own sums)."""
    import keras
    import tensorflow as tf

    by_name = {layer.name: layer for layer in keras_model.layers}
    if "logits_float32" in by_name:
        raise ValueError("mixed-precision models are not copied (float32 only)")
    units = sum(1 for name in by_name if re.fullmatch(r"unit_1_\d+_conv1", name))
    stages = sum(1 for name in by_name if re.fullmatch(r"unit_\d+_0_conv1", name))
    if not units or stages != 3 or "init_conv" not in by_name:
        raise ValueError(f"{keras_model.name} is not an lrm_tf.models.madry_resnet")
    filters = [by_name["init_conv"].filters] + [by_name[f"unit_{s}_0_conv1"].filters for s in (1, 2, 3)]
    strides = [by_name[f"unit_{s}_0_conv1"].strides[0] for s in (1, 2, 3)]
    bn = by_name["final_bn"]
    leaks = {
        float(layer.negative_slope)
        for layer in keras_model.layers
        if isinstance(layer, keras.layers.LeakyReLU)
    }
    if leaks != {0.1}:
        raise ValueError(f"LeakyReLU slopes {leaks}, the copy has 0.1")
    n = math.prod(keras_model.input_shape[1:])
    if tf_sums and not tf_cpu_sum_matches(n):
        print(
            f"warning: TensorFlow's sums of {n} values are not reproduced here; the copy's per-image "
            "standardization uses torch's own (logits differ by float rounding)",
            file=sys.stderr,
        )
        tf_sums = False
    floor = float(tf.math.rsqrt(tf.constant(n, tf.float32)))  # what TF's layer computes
    standardize = PerImageStandardization(tf_sums, floor)
    net = MadryResNet(units, filters, strides, by_name["logits"].units, bn.epsilon, bn.momentum, standardize)
    _copy_conv(net.init_conv, by_name["init_conv"])
    for i, unit in enumerate(net.units):
        name = f"unit_{i // units + 1}_{i % units}"
        for part in ("bn0", "bn1"):
            _copy_bn(getattr(unit, part), by_name[f"{name}_{part}"])
        for part in ("conv1", "conv2"):
            _copy_conv(getattr(unit, part), by_name[f"{name}_{part}"])
    _copy_bn(net.final_bn, bn)
    _copy_dense(net.logits, by_name["logits"])
    return net.eval()


# --------------------------------------------------------------------------- Sequential models


class NHWCFlatten(nn.Module):
    """Keras flattens (H, W, C); torch tensors are (C, H, W)."""

    def forward(self, x):
        return torch.flatten(x.permute(0, 2, 3, 1), 1) if x.dim() == 4 else torch.flatten(x, 1)


def sequential_copy(keras_model):
    """A torch nn.Sequential (NCHW input) computing a layer-stack Keras model's logits.

    Supported layers: InputLayer, Conv2D (stride 1, 'same' with an odd kernel or 'valid'),
    MaxPooling2D, Flatten (NHWC order, as Keras flattens), Dense, ReLU / Activation('relu'),
    each with activation 'linear' or 'relu'."""
    import keras

    def activation(layer):
        name = getattr(layer.activation, "__name__", "linear") if hasattr(layer, "activation") else "linear"
        if name == "relu":
            return [nn.ReLU()]
        if name == "linear":
            return []
        raise ValueError(f"{layer.name}: activation {name} not supported")

    mods = []
    for layer in keras_model.layers:
        if isinstance(layer, keras.layers.InputLayer):
            continue
        if isinstance(layer, keras.layers.Conv2D):
            kernel = layer.kernel_size
            if tuple(layer.strides) != (1, 1) or tuple(layer.dilation_rate) != (1, 1):
                raise ValueError(f"{layer.name}: only stride 1, dilation 1")
            if layer.padding == "same":
                if any(k % 2 == 0 for k in kernel):
                    raise ValueError(f"{layer.name}: 'same' padding with an even kernel")
                padding = tuple(k // 2 for k in kernel)
            else:
                padding = 0
            in_channels = layer.get_weights()[0].shape[2]
            conv = nn.Conv2d(in_channels, layer.filters, kernel, padding=padding, bias=layer.use_bias)
            _copy_conv(conv, layer)
            mods += [conv, *activation(layer)]
        elif isinstance(layer, keras.layers.MaxPooling2D):
            if tuple(layer.pool_size) != tuple(layer.strides):
                raise ValueError(f"{layer.name}: pool size must equal strides")
            # Keras 'same' pads at the end only; max over the padded window = ceil_mode.
            mods.append(nn.MaxPool2d(layer.pool_size, layer.strides, ceil_mode=layer.padding == "same"))
        elif isinstance(layer, keras.layers.Flatten):
            mods.append(NHWCFlatten())
        elif isinstance(layer, keras.layers.Dense):
            dense = nn.Linear(layer.get_weights()[0].shape[0], layer.units, bias=layer.use_bias)
            _copy_dense(dense, layer)
            mods += [dense, *activation(layer)]
        elif isinstance(layer, (keras.layers.ReLU, keras.layers.Activation)):
            mods += activation(layer) if isinstance(layer, keras.layers.Activation) else [nn.ReLU()]
        else:
            raise ValueError(f"layer {layer.name} ({type(layer).__name__}) has no PyTorch copy here")
    return nn.Sequential(*mods).eval()


def torch_copy(keras_model, tf_sums=True):
    """The PyTorch copy of an lrm_tf model (in eval mode): MadryResNet for `madry_resnet`
    models (they start with a PerImageStandardization layer named 'standardize'; tf_sums as
    `madry_resnet_copy`), else `sequential_copy`."""
    names = {layer.name for layer in keras_model.layers}
    if "standardize" in names and "init_conv" in names and "final_bn" in names:
        return madry_resnet_copy(keras_model, tf_sums)
    return sequential_copy(keras_model)


def nchw(x):
    """NHWC numpy / tensor images -> a contiguous NCHW torch tensor."""
    import numpy as np

    return torch.from_numpy(np.ascontiguousarray(np.asarray(x).transpose(0, 3, 1, 2)))


# --------------------------------------------------------------------------- training


def sgd(net, lr, momentum=0.9, weight_decay=2e-4):
    """SGD with momentum as lrm_tf's trainer: Keras' SGD (v = m v - lr g; w += v) is torch's
    (b = m b + g; w -= lr b) for a constant lr, and lrm_tf's loss term wd * sum(w^2) / 2 over
    conv and dense kernels is torch's weight_decay=wd on those weights only (no BN, no bias)."""
    kernels = [m.weight for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    ids = {id(p) for p in kernels}
    rest = [p for p in net.parameters() if id(p) not in ids]
    groups = [{"params": kernels, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum)


def train_step(net, optimizer, x, y):
    """One step on (x, y): BN in training mode, mean cross-entropy; returns the loss."""
    net.train()
    optimizer.zero_grad(set_to_none=True)
    loss = F.cross_entropy(net(x), y)
    loss.backward()
    optimizer.step()
    return loss.detach()


def pgd(net, x, y, eps, eps_step, steps, generator=None, rand_init=True, clip=(0.0, 1.0)):
    """L-inf PGD as lrm_tf's training attack runs it: model in inference mode (BN moving
    statistics, no update), uniform random start clipped to the range, each step the sign of
    d(sum of cross-entropies)/dx (input gradient only), clip to range, clip to the ball, clip
    to range (CleverHans' order, as lrm_tf.attacks.pgd). Returns x_adv without gradient."""
    was_training = net.training
    net.eval()
    lo, hi = clip
    x = x.detach()
    if rand_init:
        x_adv = (x + torch.empty_like(x).uniform_(-eps, eps, generator=generator)).clamp(lo, hi)
    else:
        x_adv = x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(net(x_adv), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, [x_adv])
        x_adv = (x_adv.detach() + eps_step * grad.sign()).clamp(lo, hi)
        x_adv = (x + (x_adv - x).clamp(-eps, eps)).clamp(lo, hi)
    net.train(was_training)
    return x_adv.detach()


# --------------------------------------------------------------------------- self-check


def randomize_batch_norm(keras_model, seed=0):
    """Gives every BatchNormalization non-trivial moving statistics, scale and offset (a fresh
    model has 0 / 1 / 1 / 0, under which a wrong epsilon or a swapped pair goes unseen)."""
    import keras
    import numpy as np

    rng = np.random.default_rng(seed)
    for layer in keras_model.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            c = layer.get_weights()[0].shape[0]
            layer.set_weights(
                [
                    rng.uniform(0.5, 1.5, c).astype(np.float32),  # gamma
                    rng.normal(0.0, 0.2, c).astype(np.float32),  # beta
                    rng.normal(0.0, 0.5, c).astype(np.float32),  # moving mean
                    rng.uniform(0.3, 3.0, c).astype(np.float32),  # moving variance
                ]
            )


def _bn_pairs(keras_model, net):
    import keras

    ours = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    theirs = [layer for layer in keras_model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    return list(zip(theirs, ours, strict=True))


def _max_diff(a, b):
    import numpy as np

    return float(np.max(np.abs(np.asarray(a, np.float64) - np.asarray(b, np.float64))))


def check_copy(keras_model, x, y, label, report, gradient_examples=100):
    """Inference logits of `keras_model` and its copy on NHWC images x (also, for a Madry
    ResNet, the standardised images, and the copy with torch's own sums), and the input
    gradient of the summed cross-entropy (what the attacks follow) on the first
    `gradient_examples`; report(what, difference, largest |value|, checked)."""
    import keras
    import numpy as np
    import tensorflow as tf

    net = torch_copy(keras_model)
    xt = nchw(x)
    keras_logits = np.asarray(keras_model(x, training=False))
    with torch.no_grad():
        torch_logits = net(xt).numpy()
    largest = np.abs(keras_logits).max()
    report(f"{label}: logits, inference mode", _max_diff(keras_logits, torch_logits), largest)
    if isinstance(net, MadryResNet):
        standardize = keras.Model(keras_model.input, keras_model.get_layer("standardize").output)
        with torch.no_grad():
            ours = net.standardize(xt).permute(0, 2, 3, 1).numpy()
            plain = torch_copy(keras_model, tf_sums=False)(xt).numpy()
        report(f"{label}: standardised images", _max_diff(standardize(x), ours), None, math.inf)
        report(
            f"{label}: logits, copy with torch's own sums", _max_diff(keras_logits, plain), largest, math.inf
        )
    xg, yg = x[:gradient_examples], np.asarray(y[:gradient_examples], np.int64)
    xv = tf.constant(xg)
    with tf.GradientTape() as tape:
        tape.watch(xv)
        loss = tf.reduce_sum(
            tf.nn.sparse_softmax_cross_entropy_with_logits(yg, keras_model(xv, training=False))
        )
    keras_grad = tape.gradient(loss, xv).numpy()
    xq = nchw(xg).requires_grad_(True)
    F.cross_entropy(net(xq), torch.from_numpy(yg), reduction="sum").backward()
    torch_grad = xq.grad.permute(0, 2, 3, 1).numpy()
    per_image = np.abs(keras_grad - torch_grad).reshape(len(yg), -1).max(1)
    report(
        f"{label}: input gradient of the cross-entropy ({len(yg)} images; median over images of "
        f"their max |difference| {np.median(per_image):.1e}; LeakyReLU kinks make rare outliers)",
        _max_diff(keras_grad, torch_grad),
        np.abs(keras_grad).max(),
        math.inf,
    )
    return net


def check_training(keras_model, x, y, report, tolerance, lr=0.01, steps=2):
    """Training-mode forward (logits and moving statistics), then `steps` SGD steps of lrm_tf's
    trainer (regular objective, weight decay 2e-4, momentum 0.9) and of `sgd` + `train_step`
    from the same weights: the weights and moving statistics after them."""
    import keras
    import numpy as np
    import tensorflow as tf

    from lrm_tf import training
    from lrm_tf.config import Objective

    net = torch_copy(keras_model)
    xt, yt = nchw(x), torch.from_numpy(np.asarray(y, np.int64))
    clone = keras.models.clone_model(keras_model)  # the forward below updates moving statistics
    clone.set_weights(keras_model.get_weights())
    keras_logits = np.asarray(clone(x, training=True))
    net.train()
    with torch.no_grad():
        torch_logits = net(xt).numpy()
    report("training-mode forward: logits", _max_diff(keras_logits, torch_logits), np.abs(keras_logits).max())
    stats = [
        max(_max_diff(k.moving_mean, t.running_mean), _max_diff(k.moving_variance, t.running_var))
        for k, t in _bn_pairs(clone, net)
    ]
    report("training-mode forward: moving mean and variance after it", max(stats), None)

    # The steps: Keras', the copy's, and the copy's in float64 (exact arithmetic, as a ruler:
    # after steps, float32 rounding alone moves weights and logits by more than 1e-4).
    cfg = training.TrainConfig(batch_size=len(y), lr_values=(lr,), lr_boundaries=(), seed=0, verbose=0)
    nets = {"copy": torch_copy(keras_model), "float64": torch_copy(keras_model, tf_sums=False).double()}
    trainer = training.build_trainer(keras_model, Objective(), int(np.max(y)) + 1, cfg, steps_per_epoch=steps)
    ds = tf.data.Dataset.from_tensors((tf.constant(x), tf.constant(y))).repeat(steps)
    history = trainer.fit(ds, epochs=1, verbose=0, shuffle=False).history
    keras_ce = history["loss"][0] - history["weight_decay"][0]  # mean over the steps
    flat = lambda arrays: np.concatenate([np.ravel(np.asarray(a, np.float64)) for a in arrays])  # noqa: E731
    kernels = [
        layer for layer in keras_model.layers if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense))
    ]
    bns = [layer for layer in keras_model.layers if isinstance(layer, keras.layers.BatchNormalization)]
    after = {
        "kernels": flat(
            [
                np.asarray(k.kernel).transpose(3, 2, 0, 1) if k.kernel.ndim == 4 else np.asarray(k.kernel).T
                for k in kernels
            ]
        ),
        "moving statistics": flat([v for b in bns for v in (b.moving_mean, b.moving_variance)]),
        "logits, inference mode": flat([keras_model(x, training=False)]),
    }
    results = {"keras": after}
    for name, net in nets.items():
        dtype = torch.float64 if name == "float64" else torch.float32
        optimizer = sgd(net, lr, cfg.momentum, cfg.weight_decay)
        losses = [float(train_step(net, optimizer, xt.to(dtype), yt)) for _ in range(steps)]
        if name == "copy":
            report(f"{steps} SGD steps: mean cross-entropy", abs(keras_ce - float(np.mean(losses))), None)
        net.eval()
        with torch.no_grad():
            logits = net(xt.to(dtype))
        results[name] = {
            "kernels": flat(
                [m.weight.detach() for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
            ),
            "moving statistics": flat(
                [
                    v
                    for m in net.modules()
                    if isinstance(m, nn.BatchNorm2d)
                    for v in (m.running_mean, m.running_var)
                ]
            ),
            "logits, inference mode": flat([logits]),
        }
    for what in after:
        k, c, e = (results[n][what] for n in ("keras", "copy", "float64"))
        rounding, keras_exact = _max_diff(c, e), _max_diff(k, e)
        report(
            f"{steps} SGD steps, {what} after them (copy vs its float64 run {rounding:.1e}, "
            f"Keras vs it {keras_exact:.1e})",
            _max_diff(k, c),
            None,
            math.inf,
        )
        # A semantic difference would put Keras far from the float64 copy; rounding, not.
        report(
            f"{steps} SGD steps, {what}: Keras vs the float64 copy, limit max(tolerance, 3 x the copy's "
            "own float32 rounding)",
            keras_exact,
            None,
            max(tolerance, 3 * rounding),
        )


def main():
    import argparse
    import json

    import keras
    import numpy as np
    import tensorflow as tf

    import lrm_tf  # noqa: F401  (registers lrm_tf's layers for load_model)
    from lrm_tf import data, models

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--local_data", default="", help="CIFAR-10 upstream files (lrm_tf's --local_data)")
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--examples", type=int, default=500, help="test images for the inference check")
    parser.add_argument("--batch", type=int, default=128, help="batch of the training checks")
    parser.add_argument("--run", default="", help="also check this lrm_tf run directory's model.keras")
    parser.add_argument("--tolerance", type=float, default=1e-4)
    parser.add_argument("--torch_threads", type=int, default=0)
    args = parser.parse_args()

    torch.set_num_threads(args.torch_threads or os.cpu_count())
    arrays = data.load_arrays(args.dataset, local_data=args.local_data or None)
    x = data.to_float(arrays.x_test[: args.examples]).numpy()
    y = arrays.y_test[: args.examples]
    xb = data.to_float(arrays.x_train[: args.batch]).numpy()
    yb = arrays.y_train[: args.batch].astype(np.int32)
    failures = []

    def report(what, diff, largest, limit=None):  # limit: None the tolerance, inf unchecked
        bad = diff > (args.tolerance if limit is None else limit)
        scale = f" (largest |value| {largest:.3g})" if largest is not None else ""
        print(
            f"  {what}: max |difference| {diff:.2e}{scale}{'  ** above tolerance' if bad else ''}", flush=True
        )
        if bad:
            failures.append(what)

    print(
        f"# torch_models self-check: {args.examples} {args.dataset} test images, training batch "
        f"{args.batch}; TF {tf.__version__}, keras {keras.__version__}, torch {torch.__version__}, "
        f"{torch.get_num_threads()} torch threads, load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    info = arrays.info
    print("fresh resnet_simple (seed 0), batch-norm statistics, scales and offsets randomised:")
    fresh = models.build_model("resnet_simple", info.image_shape, info.num_classes, seed=0)
    randomize_batch_norm(fresh, seed=1)
    check_copy(fresh, x, y, "fresh", report)
    check_training(fresh, xb, yb, report, args.tolerance)
    if args.run:
        with open(os.path.join(args.run, "flags.json")) as f:
            flags = json.load(f)
        print(f"{args.run} ({flags.get('model')}, {flags.get('dataset')}):")
        trained = keras.models.load_model(os.path.join(args.run, "model.keras"), compile=False)
        check_copy(trained, x, y, "trained", report)
    if failures:
        print(f"FAILED (> {args.tolerance:g}): {'; '.join(failures)}")
        sys.exit(1)
    print(f"every difference <= {args.tolerance:g}")


if __name__ == "__main__":
    main()
