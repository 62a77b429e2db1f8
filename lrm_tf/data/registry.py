"""The dataset registry: every fact about a dataset, in one place (no TensorFlow).

Shapes, classes, split sizes, augmentation, the papers' threat model (eps and PGD step in the
[0, 1] input scale) and what `--local_data` must hold. Adding a dataset is one entry here plus,
if it is read from upstream files, its reader in `lrm_tf.data.loaders`.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    name: str
    image_shape: tuple
    num_classes: int
    crop_padding: int  # pixels of zero padding before a random crop back to size; 0 = no crop
    flip: bool  # random horizontal flips
    local_layout: str  # what --local_data must hold
    eps: float  # the papers' threat model: L-inf budget in the [0, 1] input scale
    eps_step: float  # and the PGD step that goes with it


DATASETS = {
    # Madry's MNIST setup trains without augmentation.
    "mnist": DatasetInfo("mnist", (28, 28, 1), 10, 0, False,
                         "the four MNIST idx files (train-images-idx3-ubyte.gz, ...)", 0.3, 0.01),
    "cifar10": DatasetInfo("cifar10", (32, 32, 3), 10, 4, True,
                           "cifar-10-batches-py/ (the python version of CIFAR-10)", 8 / 255, 2 / 255),
    "cifar100": DatasetInfo("cifar100", (32, 32, 3), 100, 4, True,
                            "cifar-100-python/ (the python version of CIFAR-100)", 8 / 255, 2 / 255),
    # LRM sec. 5.1: SVHN uses crops after 4-pixel padding but no flips (digits are not symmetric).
    "svhn_cropped": DatasetInfo("svhn_cropped", (32, 32, 3), 10, 4, False,
                                "train_32x32.mat and test_32x32.mat (optionally extra_32x32.mat)",
                                12 / 255, 3 / 255),
    # scikit-learn's 8x8 digits: real data shipped inside a package, so the quickstart works offline.
    "digits": DatasetInfo("digits", (8, 8, 1), 10, 0, False, "nothing (embedded in scikit-learn)",
                          0.3, 0.01),
}


def dataset_info(name: str) -> DatasetInfo:
    if name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; choose one of {', '.join(DATASETS)}")
    return DATASETS[name]
