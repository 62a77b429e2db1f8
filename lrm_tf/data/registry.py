"""The dataset registry: every fact about a dataset, in one place (no TensorFlow).

Shapes, classes, split sizes, augmentation, the papers' threat model (eps and PGD step in the
[0, 1] input scale) and what `--local_data` must hold. Adding a dataset is one entry here plus,
if it is read from upstream files, its reader in `lrm_tf.data.loaders`.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    """The facts of one dataset.

    Attributes:
        name: the `--dataset` value (the TFDS name where TFDS has the set).
        image_shape: (height, width, channels) of one image.
        num_classes: number of labels, 0 .. num_classes - 1.
        train_size: images in the training split.
        test_size: images in the test split (what evaluation uses by default).
        extra_size: images in an additional training split (SVHN's `extra`; 0 = none).
        crop_padding: pixels of zero padding before a random crop back to size; 0 = no crop.
        flip: random horizontal flips during training.
        local_layout: what a `--local_data` folder must hold.
        eps: the papers' L-inf threat budget, in the [0, 1] input scale.
        eps_step: the PGD step size that goes with `eps`, same scale.
    """

    name: str
    image_shape: tuple
    num_classes: int
    train_size: int
    test_size: int
    extra_size: int
    crop_padding: int
    flip: bool
    local_layout: str
    eps: float
    eps_step: float


DATASETS = {
    # Madry's MNIST setup trains without augmentation; threat model of Madry et al. (eps 0.3).
    "mnist": DatasetInfo(
        "mnist",
        (28, 28, 1),
        10,
        train_size=60000,
        test_size=10000,
        extra_size=0,
        crop_padding=0,
        flip=False,
        local_layout="the four MNIST idx files (train-images-idx3-ubyte.gz, ...)",
        eps=0.3,
        eps_step=0.01,
    ),
    # Madry's CIFAR threat model (eps 8/255, step 2/255), as Shafahi et al. use it.
    "cifar10": DatasetInfo(
        "cifar10",
        (32, 32, 3),
        10,
        train_size=50000,
        test_size=10000,
        extra_size=0,
        crop_padding=4,
        flip=True,
        local_layout="cifar-10-batches-py/ (the python version of CIFAR-10)",
        eps=8 / 255,
        eps_step=2 / 255,
    ),
    "cifar100": DatasetInfo(
        "cifar100",
        (32, 32, 3),
        100,
        train_size=50000,
        test_size=10000,
        extra_size=0,
        crop_padding=4,
        flip=True,
        local_layout="cifar-100-python/ (the python version of CIFAR-100)",
        eps=8 / 255,
        eps_step=2 / 255,
    ),
    # LRM sec. 5.1: SVHN uses crops after 4-pixel padding but no flips (digits are not
    # symmetric). ALP's SVHN threat model (eps 12/255, step 3/255). LRM trains on train + extra.
    "svhn_cropped": DatasetInfo(
        "svhn_cropped",
        (32, 32, 3),
        10,
        train_size=73257,
        test_size=26032,
        extra_size=531131,
        crop_padding=4,
        flip=False,
        local_layout="train_32x32.mat and test_32x32.mat (optionally extra_32x32.mat)",
        eps=12 / 255,
        eps_step=3 / 255,
    ),
    # scikit-learn's 8x8 digits: real data shipped inside a package, so the quickstart works
    # offline. 1,797 images, split 80/20 by a fixed permutation (lrm_tf.data.loaders).
    "digits": DatasetInfo(
        "digits",
        (8, 8, 1),
        10,
        train_size=1437,
        test_size=360,
        extra_size=0,
        crop_padding=0,
        flip=False,
        local_layout="nothing (embedded in scikit-learn)",
        eps=0.3,
        eps_step=0.01,
    ),
}


def dataset_info(name: str) -> DatasetInfo:
    """The registry entry of one dataset.

    Args:
        name: a `--dataset` value, e.g. "cifar10".

    Returns:
        Its DatasetInfo.

    Raises:
        ValueError: `name` is not in DATASETS (the message lists the known names).
    """
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]


def training_images(name: str, extra: bool = False) -> int:
    """Images a training run sees per epoch.

    Args:
        name: a `--dataset` value.
        extra: add the dataset's extra split (`--svhn_extra`: SVHN train + extra, 604,388).

    Returns:
        The number of training images.

    Raises:
        ValueError: unknown dataset, or `extra` for a dataset without an extra split.
    """
    info = dataset_info(name)
    if extra and not info.extra_size:
        raise ValueError(f"{name} has no extra training split")
    return info.train_size + (info.extra_size if extra else 0)
