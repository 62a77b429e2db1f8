"""The image contract of every public entry point, checked in one place.

Images are float [B, H, W, C] in the model's input range, [clip_min, clip_max] = [0, 1] by
default, or uint8 [0, 255], converted as `lrm_tf.data.to_float` documents (x / 255, then
scaled to the input range when that is not [0, 1]). Anything else - other integer or boolean
dtypes, float images outside the range (0-255 floats, [-1, 1] images), NaN - is refused with a
one-line `ValueError`, instead of being attacked or trained on in the wrong scale.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

_TOLERANCE = 1e-6  # relative to the range width: float rounding at the edges is not an error


def _contract(clip_min: float, clip_max: float) -> str:
    return f"images must be float in [{clip_min:g}, {clip_max:g}] (the input scale) or uint8 in [0, 255]"


def check_images(images, clip_min: float = 0.0, clip_max: float = 1.0, *, where: str = "images"):
    """Checks images against the input contract and converts uint8 as documented.

    Values are checked when they are known (numpy arrays, eager tensors); inside a
    `tf.function` only the dtype is checked (the entry points check values before tracing).

    Args:
      images: float or uint8 [B, H, W, C] (numpy array, tensor, or nested lists).
      clip_min: the lowest input value (a `Threat`'s clip_min).
      clip_max: the highest input value (a `Threat`'s clip_max).
      where: what to name in the error (e.g. 'evaluation.attack_accuracy images').

    Returns:
      The images in the input range: unchanged when float (numpy stays numpy, a tensor stays
      a tensor); uint8 converted to float32 clip_min + x / 255 * (clip_max - clip_min).

    Raises:
      ValueError: another dtype, values outside [clip_min, clip_max], or NaN; one line naming
        `where`, the contract, and what was found.
    """
    is_tensor = tf.is_tensor(images)
    if not is_tensor and not isinstance(images, np.ndarray):
        images = np.asarray(images)
    dtype = tf.as_dtype(images.dtype) if is_tensor else None
    np_dtype = np.dtype(dtype.as_numpy_dtype) if is_tensor else images.dtype
    if np_dtype == np.uint8:
        scale = (clip_max - clip_min) / 255.0
        if is_tensor:
            return tf.cast(images, tf.float32) * scale + clip_min
        return images.astype(np.float32) * np.float32(scale) + np.float32(clip_min)
    if not np.issubdtype(np_dtype, np.floating) and np_dtype != tf.bfloat16.as_numpy_dtype:
        raise ValueError(f"{where}: {_contract(clip_min, clip_max)}; got dtype {np_dtype.name}")
    if is_tensor and not tf.executing_eagerly() or is_tensor and not hasattr(images, "numpy"):
        return images  # symbolic: the values are checked at the entry point, before tracing
    values = images.numpy() if is_tensor else images
    if values.size == 0:
        return images
    values = values.astype(np.float32, copy=False)
    low, high = float(np.min(values)), float(np.max(values))
    slack = _TOLERANCE * (clip_max - clip_min)
    if np.isnan(low) or np.isnan(high):
        raise ValueError(f"{where}: {_contract(clip_min, clip_max)}; got NaN values")
    if low < clip_min - slack or high > clip_max + slack:
        hint = " (0-255 images: divide by 255 or pass uint8)" if high > 1.5 and clip_max <= 1 else ""
        raise ValueError(f"{where}: {_contract(clip_min, clip_max)}; got values in [{low:g}, {high:g}]{hint}")
    return images


def check_arrays(arrays, *, where: str = "arrays") -> None:
    """Checks a data set in memory (`lrm_tf.data.Arrays`) against its contract: uint8
    images [N, H, W, C] of the data set's shape (training converts them with x / 255).

    Args:
      arrays: an `lrm_tf.data.Arrays`.
      where: what to name in the error (e.g. 'training.train arrays').

    Raises:
      ValueError: float or other non-uint8 images (they would be divided by 255 again), or
        images of another shape than `arrays.info.image_shape`; one line.
    """
    shape = tuple(arrays.info.image_shape)
    for name in ("x_train", "x_test"):
        x = getattr(arrays, name)
        dtype = np.dtype(x.dtype.as_numpy_dtype) if tf.is_tensor(x) else np.asarray(x).dtype
        if dtype != np.uint8:
            raise ValueError(
                f"{where}.{name}: images must be uint8 in [0, 255] (lrm_tf.data.Arrays; training "
                f"divides by 255); got dtype {dtype.name} (float [0, 1] images: "
                "np.round(x * 255).astype(np.uint8))"
            )
        if tuple(np.shape(x)[1:]) != shape:
            raise ValueError(
                f"{where}.{name}: images must be [N, {', '.join(map(str, shape))}] for "
                f"{arrays.info.name}; got shape {list(np.shape(x))}"
            )
