"""Loading datasets (TFDS, upstream files, embedded, synthetic) and the tf.data pipeline.

Every image reaches the model as float32 in [0, 1] (the documented input range); any
normalisation happens inside the model. Arrays are held in memory as uint8, which is small
for every data set used by the papers (SVHN with `extra` is the largest, about 1.9 GB).
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import pickle
import struct

import numpy as np
import tensorflow as tf

from lrm_tf.data.registry import DATASETS, DatasetInfo, dataset_info  # noqa: F401


class DataError(Exception):
    """A data set could not be found or read; the message says which flag to set."""


@dataclasses.dataclass
class Arrays:
    """A data set in memory: uint8 images NHWC and int64 labels; `synthetic`: random images
    and labels (`synthetic_arrays`), which nothing can learn (training does not judge them)."""

    info: DatasetInfo
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    synthetic: bool = False


# ---------------------------------------------------------------------------- readers


def _read_idx(path: str) -> np.ndarray:
    with gzip.open(path, "rb") as f:
        data = f.read()
    _, dtype_code, ndim = struct.unpack(">HBB", data[:4])
    if dtype_code != 0x08:
        raise DataError(f"{path}: not a uint8 idx file")
    dims = struct.unpack(">" + "I" * ndim, data[4 : 4 + 4 * ndim])
    return np.frombuffer(data, np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find(folder: str, candidates) -> str:
    for c in candidates:
        p = os.path.join(folder, c)
        if os.path.exists(p):
            return p
    raise DataError(f"--local_data={folder} does not hold {candidates[0]}")


def _load_mnist_local(folder: str):
    def pair(prefix):
        x = _read_idx(_find(folder, [f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-images.idx3-ubyte.gz"]))
        y = _read_idx(_find(folder, [f"{prefix}-labels-idx1-ubyte.gz", f"{prefix}-labels.idx1-ubyte.gz"]))
        return x[..., None], y.astype(np.int64)

    return (*pair("train"), *pair("t10k"))


def _unpickle(path: str) -> dict:
    with open(path, "rb") as f:
        return pickle.load(f, encoding="bytes")


def _cifar_images(d: dict) -> np.ndarray:
    # Upstream rows are channel-major (1024 R, 1024 G, 1024 B).
    return d[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy()


def _load_cifar10_local(folder: str):
    root = (
        folder
        if os.path.exists(os.path.join(folder, "data_batch_1"))
        else _find(folder, ["cifar-10-batches-py"])
    )
    batches = [_unpickle(os.path.join(root, f"data_batch_{i}")) for i in range(1, 6)]
    test = _unpickle(_find(root, ["test_batch"]))
    x_train = np.concatenate([_cifar_images(b) for b in batches])
    y_train = np.concatenate([np.asarray(b[b"labels"], np.int64) for b in batches])
    return x_train, y_train, _cifar_images(test), np.asarray(test[b"labels"], np.int64)


def _load_cifar100_local(folder: str):
    root = folder if os.path.exists(os.path.join(folder, "train")) else _find(folder, ["cifar-100-python"])
    train = _unpickle(_find(root, ["train"]))
    test = _unpickle(_find(root, ["test"]))
    return (
        _cifar_images(train),
        np.asarray(train[b"fine_labels"], np.int64),
        _cifar_images(test),
        np.asarray(test[b"fine_labels"], np.int64),
    )


def _load_svhn_local(folder: str, use_extra: bool = False):
    from scipy.io import loadmat  # scipy is only needed for this format

    def read(name):
        m = loadmat(_find(folder, [name]))
        x = m["X"].transpose(3, 0, 1, 2)  # upstream is HWCN
        y = m["y"].reshape(-1).astype(np.int64)
        y[y == 10] = 0  # upstream labels the digit 0 as 10; TFDS uses 0
        return x, y

    x_train, y_train = read("train_32x32.mat")
    if use_extra:
        x_extra, y_extra = read("extra_32x32.mat")
        x_train = np.concatenate([x_train, x_extra])
        y_train = np.concatenate([y_train, y_extra])
    return (x_train, y_train, *read("test_32x32.mat"))


def _load_digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    # 16 grey levels (0..16) scaled to uint8 so that the pipeline's /255 gives [0, 1].
    x = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)[..., None]
    y = d.target.astype(np.int64)
    # The set is ordered by writer; a fixed permutation gives a class-balanced 80/20 split.
    order = np.random.RandomState(0).permutation(len(y))
    x, y = x[order], y[order]
    n_train = DATASETS["digits"].train_size
    return x[:n_train], y[:n_train], x[n_train:], y[n_train:]


def _load_tfds(name: str, data_dir: str | None, download: bool, train_split: str = "train"):
    import tensorflow_datasets as tfds

    builder = tfds.builder(name, data_dir=data_dir)
    if not builder.is_prepared():
        if not download or not _download_host_reachable():
            raise DataError(_missing_message(name))
        try:
            builder.download_and_prepare()
        except Exception as e:  # no network, bad data_dir: say what to do instead
            raise DataError(f"{_missing_message(name)} (TFDS download failed: {type(e).__name__})") from None
    out = []
    for split in (train_split, "test"):
        x, y = tfds.as_numpy(builder.as_dataset(split=split, batch_size=-1, as_supervised=True))
        out += [x.astype(np.uint8), y.astype(np.int64)]
    return tuple(out)


def _download_host_reachable(timeout: float = 3.0) -> bool:
    """A quick offline check, so an offline machine gets one clear line instead of a failed download."""
    import socket

    try:
        socket.create_connection(("storage.googleapis.com", 443), timeout=timeout).close()
        return True
    except OSError:
        return False


def _missing_message(name: str) -> str:
    info = DATASETS[name]
    return (
        f"dataset {name!r} is not available offline: set --local_data to a folder holding "
        f"{info.local_layout}, or --data_dir to a prepared TFDS data directory"
    )


_LOCAL_READERS = {
    "mnist": _load_mnist_local,
    "cifar10": _load_cifar10_local,
    "cifar100": _load_cifar100_local,
    "svhn_cropped": _load_svhn_local,
}


def load_arrays(
    name: str,
    data_dir: str | None = None,
    local_data: str | None = None,
    download: bool = True,
    svhn_extra: bool = False,
) -> Arrays:
    """Loads a data set into memory.

    Order of preference: the embedded set; `local_data` (upstream file layout); TFDS from
    `data_dir` (downloading when `download` and the network allow).

    Args:
        name: a dataset of the registry (lrm_tf.data.registry.DATASETS).
        data_dir: a TFDS data directory, or None for TFDS's default.
        local_data: a folder in the upstream layout (DatasetInfo.local_layout), or None.
        download: let TFDS download a missing set when the network allows.
        svhn_extra: add SVHN's `extra` images (DatasetInfo.extra_size) to its training set
            (LRM trains on train + extra).

    Returns:
        Arrays: uint8 images (N, H, W, C) in [0, 255] and int64 labels, train and test.

    Raises:
        ValueError: unknown dataset, or `svhn_extra` for another dataset.
        DataError: the data cannot be found or read (the message names the flag to set).
    """
    info = dataset_info(name)
    if svhn_extra and name != "svhn_cropped":
        raise ValueError(f"svhn_extra applies to svhn_cropped only, not {name}")
    if name == "digits":
        parts = _load_digits()
    elif local_data:
        if not os.path.isdir(local_data):
            raise DataError(f"--local_data={local_data} is not a folder")
        try:
            parts = (
                _load_svhn_local(local_data, use_extra=True)
                if svhn_extra
                else _LOCAL_READERS[name](local_data)
            )
        except (OSError, KeyError, ValueError, pickle.UnpicklingError) as e:
            raise DataError(
                f"--local_data={local_data}: cannot read {name} ({type(e).__name__}: {e})"
            ) from None
    else:
        parts = _load_tfds(name, data_dir, download, "train+extra" if svhn_extra else "train")
    arrays = Arrays(info, *parts)
    _check_shapes(arrays)
    return arrays


def synthetic_arrays(name: str, n_train: int = 256, n_test: int = 128, seed: int = 0) -> Arrays:
    """Random images and labels of the right shape, for tests and dry runs of any data set.

    Args:
        name: a dataset of the registry (its image shape and classes are used).
        n_train: training images to make.
        n_test: test images to make.
        seed: seed of the numpy generator.

    Returns:
        Arrays with uint8 images uniform in [0, 255] and int64 labels uniform over the classes.

    Raises:
        ValueError: unknown dataset.
    """
    info = dataset_info(name)
    rng = np.random.RandomState(seed)

    def make(n):
        x = rng.randint(0, 256, size=(n, *info.image_shape)).astype(np.uint8)
        y = rng.randint(0, info.num_classes, size=n).astype(np.int64)
        return x, y

    return Arrays(info, *make(n_train), *make(n_test), synthetic=True)


def _check_shapes(a: Arrays):
    for x, y, split in ((a.x_train, a.y_train, "train"), (a.x_test, a.y_test, "test")):
        if x.shape[1:] != a.info.image_shape or len(x) != len(y):
            raise DataError(
                f"{a.info.name} {split}: expected images {a.info.image_shape} with one "
                f"label each, got {x.shape} and {y.shape}"
            )


# ---------------------------------------------------------------------------- pipelines


def to_float(images):
    """uint8 [0, 255] -> float32 [0, 1], the range every model and attack works in.

    Args:
        images: a uint8 tensor of any shape.

    Returns:
        A float32 tensor of the same shape, values in [0, 1].
    """
    return tf.cast(images, tf.float32) / 255.0


def _augment(info: DatasetInfo, seed: int):
    pad = info.crop_padding
    h, w, c = info.image_shape

    def fn(x, y, s):
        if pad:
            x = tf.pad(x, [[pad, pad], [pad, pad], [0, 0]])
            x = tf.image.stateless_random_crop(x, (h, w, c), seed=s)
        if info.flip:
            x = tf.image.stateless_random_flip_left_right(x, seed=s + 1)
        return x, y

    return fn


def train_dataset(
    arrays: Arrays,
    batch_size: int,
    seed: int = 0,
    epoch: int = 0,
    augment: bool = True,
    limit: int | None = None,
) -> tf.data.Dataset:
    """One epoch of shuffled, augmented, batched training data (drop_remainder for fixed shapes).

    Shuffling and augmentation are seeded by (seed, epoch), so a resumed run sees the same
    epochs as an uninterrupted one. Augmentation is the registry's: a random crop after
    `crop_padding` pixels of zero padding and random horizontal flips where `flip`.

    Args:
        arrays: the data set in memory.
        batch_size: images per batch (a last partial batch is dropped).
        seed: the run's seed.
        epoch: the epoch number (0-based); with `seed` it fixes the order and augmentation.
        augment: apply the dataset's augmentation.
        limit: use only the first `limit` training images (0 or None: all).

    Returns:
        A tf.data.Dataset of (images float32 (B, H, W, C) in [0, 1], labels int64 (B,)).
    """
    x, y = arrays.x_train, arrays.y_train
    if limit:
        x, y = x[:limit], y[:limit]
    n = len(y)
    order = np.random.RandomState([seed, epoch]).permutation(n)
    # An exact per-epoch permutation (no shuffle buffer), so resumed runs see identical epochs.
    ds = tf.data.Dataset.from_tensor_slices((x[order], y[order]))
    ds = ds.map(lambda a, b: (to_float(a), b), num_parallel_calls=tf.data.AUTOTUNE)
    if augment and (arrays.info.crop_padding or arrays.info.flip):
        aug = _augment(arrays.info, seed)
        seeds = tf.data.Dataset.from_tensor_slices(
            np.stack([np.full(n, seed * 1000003 + epoch, np.int64), np.arange(n)], axis=1)
        )
        ds = tf.data.Dataset.zip(ds, seeds).map(
            lambda xy, s: aug(xy[0], xy[1], s), num_parallel_calls=tf.data.AUTOTUNE
        )
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def eval_dataset(arrays: Arrays, batch_size: int, limit: int | None = None) -> tf.data.Dataset:
    """The test split in order, unaugmented and batched (the last batch may be smaller).

    Args:
        arrays: the data set in memory.
        batch_size: images per batch.
        limit: use only the first `limit` test images (0 or None: all).

    Returns:
        A tf.data.Dataset of (images float32 (B, H, W, C) in [0, 1], labels int64 (B,)).
    """
    x, y = arrays.x_test, arrays.y_test
    if limit:
        x, y = x[:limit], y[:limit]
    ds = tf.data.Dataset.from_tensor_slices((x, y)).map(lambda a, b: (to_float(a), b))
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)
