"""Datasets: the registry of dataset facts (`registry`, no TensorFlow) and the loaders and
tf.data pipelines (`loaders`). Every image reaches the model as float32 in [0, 1]."""

from lrm_tf.data.registry import (
    DATASETS,
    RECIPES,
    DatasetInfo,
    Recipe,
    dataset_info,
    recipe_of,
    training_images,
)

_LOADERS = (
    "Arrays",
    "DataError",
    "eval_dataset",
    "load_arrays",
    "synthetic_arrays",
    "to_float",
    "train_dataset",
)


def __getattr__(name):  # the loaders import TensorFlow: only when used
    if name in _LOADERS:
        from lrm_tf.data import loaders

        return getattr(loaders, name)
    raise AttributeError(f"module 'lrm_tf.data' has no attribute {name!r}")


__all__ = [
    "DATASETS",
    "RECIPES",
    "DatasetInfo",
    "Recipe",
    "dataset_info",
    "recipe_of",
    "training_images",
    *_LOADERS,
]
