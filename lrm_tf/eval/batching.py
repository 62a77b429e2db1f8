"""Batch-, position- and replica-independent evaluation: `map_batches`, and `Outcome`, one
attack's per-example result.

`map_batches` runs a per-example function over a test set batch by batch under a
`tf.distribute.Strategy`; since the attacks key their randomness per example
(`lrm_tf.attacks._common`), what it yields does not depend on the batch size or the replica
count. Every evaluation (`lrm_tf.eval.evaluation`, the AutoAttack ensemble in
`lrm_tf.eval.autoattack`) batches through it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import tensorflow as tf


@dataclasses.dataclass
class Outcome:
    """One attack's result per example: `correct` bool [n] (the prediction on the adversarial
    example is the label), `x_adv` float32 [n, H, W, C] or None, and `details` (extra
    JSON-able entries of the attack's row: an ensemble's stages and warnings)."""

    correct: np.ndarray
    x_adv: np.ndarray | None = None
    details: dict = dataclasses.field(default_factory=dict)


def map_batches(
    per_example_fn,
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    seed: int,
    strategy: tf.distribute.Strategy,
) -> Iterator[tuple[int, np.ndarray]]:
    """Runs `per_example_fn` batch by batch under `strategy`; values come back per example.

    Every batch uses the same seed (seed, 0), and attacks key their randomness per example
    (`lrm_tf.attacks._common`), so an example's value depends neither on its batch, nor on
    its position, nor on the replica count. Under several replicas a batch is padded to a
    multiple of the replica count with copies of its last example, so that every replica
    gets a share of the same, non-empty size (a model run on an empty share fails with oneDNN:
    "input depth must be evenly divisible by filter depth"); the copies are dropped from
    what is yielded.

    Args:
      per_example_fn: (x float32 [b, ...], y int64 [b], seed int64 [2]) -> a tensor [b, ...],
        one row per example, each row a function of its own example only; traced once,
        with an unknown batch size, for all the batches.
      images: float [N, H, W, C] in the model's input scale (numpy or tensor; cast to
        float32); labels: int [N].
      batch_size: global batch size (>= 1), split over the replicas in contiguous shards in
        replica order.
      seed: the evaluation seed.
      strategy: a `tf.distribute.Strategy`.

    Yields:
      (end index of the batch, numpy values [b, ...] of the batch's examples, in order; a
      nested structure of them when `per_example_fn` returns one).

    Raises:
      ValueError: batch_size < 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(labels)
    replicas = strategy.num_replicas_in_sync
    step = None
    step_seed = tf.constant([seed, 0], tf.int64)
    for start in range(0, n, batch_size):
        end = min(start + batch_size, n)
        x = tf.cast(images[start:end], tf.float32)
        y = tf.cast(labels[start:end], tf.int64)
        x, y = _pad_to_multiple(x, y, replicas)
        if step is None:
            step = _compile(per_example_fn, strategy, x.shape[1:])
        values = step(x, y, step_seed)
        yield end, tf.nest.map_structure(lambda v: np.asarray(v)[: end - start], values)


def _compile(per_example_fn, strategy: tf.distribute.Strategy, example_shape):
    """`per_example_fn` traced once for any batch size: (x, y, seed) -> values [b, ...].

    Under several replicas, each replica runs it on its contiguous share of the batch (b is
    a multiple of the replica count), and the shares are gathered in replica order, i.e. in
    batch order.
    """
    if strategy.num_replicas_in_sync == 1:
        fn = per_example_fn
    else:

        def on_replica(x, y, seed):
            ctx = tf.distribute.get_replica_context()
            size = tf.shape(x)[0] // ctx.num_replicas_in_sync
            lo = ctx.replica_id_in_sync_group * size
            return per_example_fn(x[lo : lo + size], y[lo : lo + size], seed)

        def fn(x, y, seed):
            values = strategy.run(on_replica, args=(x, y, seed))
            return tf.nest.map_structure(lambda v: strategy.gather(v, axis=0), values)

    return tf.function(fn).get_concrete_function(
        tf.TensorSpec([None, *example_shape], tf.float32),
        tf.TensorSpec([None], tf.int64),
        tf.TensorSpec([2], tf.int64),
    )


def _pad_to_multiple(x, y, replicas: int):
    """(x, y) with copies of the last example appended up to a multiple of `replicas`."""
    size = int(x.shape[0])
    padding = -size % replicas
    if not padding:
        return x, y
    index = tf.concat([tf.range(size), tf.fill([padding], size - 1)], axis=0)
    return tf.gather(x, index), tf.gather(y, index)
