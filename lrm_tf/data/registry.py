"""The dataset registry: every fact about a dataset, in one place (no TensorFlow).

Shapes, classes, split sizes, augmentation, the papers' threat model (eps and PGD step in the
[0, 1] input scale), the papers' optimisation recipe (`RECIPES`: what training uses for the
settings a user does not give) and what `--local_data` must hold. Adding a dataset is one entry here plus,
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
        recipe: the name of its papers' optimisation recipe in `RECIPES` ("": none, the
            library defaults of `lrm_tf.config.TrainConfig`).
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
    recipe: str = ""


@dataclasses.dataclass(frozen=True)
class Recipe:
    """The optimisation settings a paper trains a dataset with.

    Attributes:
        name: flags/base/<name>.cfg holds the same values (a test compares them).
        source: the paper and section.
        settings: `lrm_tf.config.TrainConfig` field -> value. Only settings that change the
            optimisation: the schedule's unit is left out where there is nothing to schedule
            (one constant rate, no warm-up), momentum where the optimizer is Adam, and the
            length of training always (the papers' 100k steps or 200 epochs are chosen by
            the user, `train_steps` / `train_epochs`).
    """

    name: str
    source: str
    settings: dict


# LRM trains CIFAR and SVHN alike but for the learning-rate schedule (sec. 5.1).
_LRM_SGD = {
    "optimizer": "momentum",
    "momentum": 0.9,
    "schedule_unit": "epochs",
    "weight_decay": 2e-4,
    "batch_size": 128,
}

RECIPES = {
    "madry_mnist": Recipe(
        "madry_mnist",
        "Madry et al. 2018, MNIST challenge code: Adam 1e-4 constant, batch 50, no weight decay",
        {
            "optimizer": "adam",
            "lr_values": (1e-4,),
            "lr_boundaries": (),
            "lr_warmup": 0.0,
            "weight_decay": 0.0,
            "batch_size": 50,
        },
    ),
    "lrm_cifar_recipe": Recipe(
        "lrm_cifar_recipe",
        "Summers & Dinneen 2019 sec. 5.1 (CIFAR): momentum 0.9, weight decay 2e-4, batch 128, "
        "5 warm-up epochs to 0.1, x0.1 at epochs 100 and 150",
        {**_LRM_SGD, "lr_values": (0.1, 0.01, 0.001), "lr_boundaries": (100.0, 150.0), "lr_warmup": 5.0},
    ),
    "lrm_svhn": Recipe(
        "lrm_svhn",
        "Summers & Dinneen 2019 sec. 5.1 (SVHN): momentum 0.9, weight decay 2e-4, batch 128, "
        "lr 0.001 for 5 epochs, 0.01 to epoch 80, then 0.001",
        {**_LRM_SGD, "lr_values": (0.001, 0.01, 0.001), "lr_boundaries": (5.0, 80.0), "lr_warmup": 0.0},
    ),
}


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
        recipe="madry_mnist",
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
        recipe="lrm_cifar_recipe",
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
        recipe="lrm_cifar_recipe",
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
        recipe="lrm_svhn",
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


def recipe_of(name: str) -> Recipe | None:
    """The papers' optimisation recipe of a dataset.

    Args:
        name: a `--dataset` value.

    Returns:
        Its Recipe, or None where it has none (digits: the library defaults).

    Raises:
        ValueError: unknown dataset.
    """
    info = dataset_info(name)
    return RECIPES[info.recipe] if info.recipe else None


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
