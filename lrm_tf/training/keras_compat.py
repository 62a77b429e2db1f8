"""Keras 3 workarounds that only MultiWorkerMirroredStrategy needs; nothing else imports them.

Both touch Keras' TensorFlow trainer (`keras/src/backend/tensorflow/trainer.py`); the first
overrides a private method, so the Keras versions it is tested with are pinned in
pyproject.toml (tested: Keras 3.15.1 with TensorFlow 2.21, tests/test_distribute.py).
"""

from __future__ import annotations

import keras
import tensorflow as tf


def apply_multiworker(trainer: keras.Model, strategy: tf.distribute.Strategy) -> None:
    """Lets `trainer.fit` build under MultiWorkerMirroredStrategy.

    Keras gets the shapes of the first distributed batch by reducing the (x, y) structure
    with `strategy.reduce` in the private `_maybe_symbolic_build`; MultiWorkerMirroredStrategy
    cannot reduce a nested structure ("Attempt to convert a value (PerReplica...)"). One
    local replica's values carry the same shapes, so this hands those to Keras instead. Only
    this instance changes.

    Args:
      trainer: the compiled Keras model whose `fit` runs under `strategy`.
      strategy: the MultiWorkerMirroredStrategy.

    Raises:
      RuntimeError: this Keras has no `_maybe_symbolic_build` (a version outside the tested
        range).
    """
    keras_build = getattr(trainer, "_maybe_symbolic_build", None)
    if keras_build is None:
        raise RuntimeError(
            f"Keras {keras.__version__} has no Trainer._maybe_symbolic_build: "
            "the multi-worker workaround in lrm_tf.training.keras_compat needs "
            "the Keras range pinned in pyproject.toml"
        )

    def local_replica(value):
        if isinstance(value, tf.distribute.DistributedValues):
            return strategy.experimental_local_results(value)[0]
        return value

    def maybe_symbolic_build(iterator=None, data_batch=None):
        if iterator is not None:
            for _, _, it in iterator:
                data_batch = keras.tree.map_structure(local_replica, next(it))
                break
            iterator = None
        keras_build(iterator=iterator, data_batch=data_batch)

    trainer._maybe_symbolic_build = maybe_symbolic_build


def multiworker_logs(logs: dict) -> dict:
    """The logs of a train or test step, shaped for a multi-worker `fit`.

    Keras 3 reduces each logged value across workers with `strategy.reduce(MEAN, axis=0)`,
    which fails on scalars (tensorflow/tensorflow#72388); as [1] vectors they average back to
    scalars.

    Args:
      logs: name -> scalar tensor.

    Returns:
      name -> [1] tensor.
    """
    return {name: tf.reshape(value, [1]) for name, value in logs.items()}
