"""The global batch under tf.distribute: what the objective terms need to equal one device.

A training step under a tf.distribute strategy runs once per replica on that replica's share
of the global batch. Per-example means need nothing more: the trainer divides each replica's
loss by the replica count and the gradients are summed, which gives the gradient of the
global-batch mean. Batch-level quantities (a Frobenius norm of the whole batch, pairs of
examples, a permutation for mixup) are instead computed on the global batch, gathered on
every replica with `global_batch`. `ReplicaContext.all_gather` is differentiable: its
gradient sums the upstream gradients of all replicas and hands each replica its own rows, so
a value computed identically on every replica, divided by the replica count, gets exactly its
one-device gradient. Outside a replica context (one device, eager code) every helper here is
the identity.
"""

from __future__ import annotations

import tensorflow as tf


def _replica():
    """(context, number of replicas, this replica's id); (None, 1, 0) in cross-replica context."""
    ctx = tf.distribute.get_replica_context()
    if ctx is None:
        return None, 1, 0
    return ctx, ctx.num_replicas_in_sync, ctx.replica_id_in_sync_group


def global_batch(x):
    """All replicas' rows of `x`, in the order of the global batch.

    Args:
      x: [local_batch, ...] tensor of this replica (equal shares on every replica).

    Returns:
      [replicas * local_batch, ...] tensor; `x` itself on one device. Differentiable.
    """
    ctx, n, _ = _replica()
    if ctx is None or n == 1:
        return x
    return ctx.all_gather(x, axis=0)


def local_slice(x_global, local_size):
    """This replica's rows of a tensor defined over the global batch.

    Args:
      x_global: [replicas * local_size, ...] tensor (e.g. from `global_batch`).
      local_size: int or scalar int tensor, the rows per replica.

    Returns:
      [local_size, ...] tensor: rows [id * local_size, (id + 1) * local_size).
    """
    _, n, rid = _replica()
    if n == 1:
        return x_global
    return x_global[rid * local_size : (rid + 1) * local_size]


def global_mean(value):
    """Mean over replicas of a per-replica batch mean: the global-batch mean (equal shares).

    Args:
      value: scalar tensor of this replica.

    Returns:
      scalar tensor, the same on every replica; `value` on one device.
    """
    ctx, n, _ = _replica()
    if ctx is None or n == 1:
        return value
    return ctx.all_reduce(tf.distribute.ReduceOp.MEAN, value)
