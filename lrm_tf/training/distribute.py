"""tf.distribute strategy by name (one device, several GPUs, several hosts, TPU), and
which task of a multi-worker cluster this process is.

Multi-worker runs (`--strategy=multiworker`): every worker runs the same command with its own
TF_CONFIG, e.g. on two hosts
    TF_CONFIG='{"cluster": {"worker": ["host0:12345", "host1:12345"]},
                "task": {"type": "worker", "index": 0}}'  (index 1 on the second host).
The chief (task "chief", or worker 0 when there is none) owns the run directory; the other
workers save their checkpoints and logs to a temporary directory that is deleted at the end
(TF requires every worker to take part in a save). Resuming reads the chief's checkpoints on
every worker, so the run directory must be on a file system all workers see.
"""

from __future__ import annotations

from collections.abc import Sequence

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multiworker", "tpu")


def make_strategy(
    name: str = "default", devices: Sequence[str] = (), num_gpus: int = 0, tpu: str = ""
) -> tf.distribute.Strategy:
    """A tf.distribute strategy by name.

    Args:
      name: 'default' (the current strategy, one device), 'mirrored' (local devices),
        'multiworker' (hosts from TF_CONFIG) or 'tpu'.
      devices: MirroredStrategy's replicas, e.g. ['/cpu:0', '/cpu:1'].
      num_gpus: MirroredStrategy over /gpu:0 ... when `devices` is empty.
      tpu: the TPU's name or address (TPUClusterResolver).

    Returns:
      tf.distribute.Strategy.

    Raises:
      ValueError: an unknown name.
      RuntimeError: 'multiworker' after TensorFlow initialised its devices.
    """
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if not devices and num_gpus:
            devices = [f"/gpu:{i}" for i in range(num_gpus)]
        return tf.distribute.MirroredStrategy(devices=list(devices) or None)
    if name == "multiworker":
        # Cluster from TF_CONFIG; every worker runs the same command.
        try:
            return tf.distribute.MultiWorkerMirroredStrategy()
        except RuntimeError as e:
            if "program startup" not in str(e):
                raise
            raise RuntimeError(
                "the multiworker strategy must be created before TensorFlow initialises its "
                "devices: call lrm_tf.training.distribute.make_strategy('multiworker') before any other "
                "TensorFlow call (e.g. tf.config.list_logical_devices)"
            ) from e
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def task(strategy=None):
    """(task_type, task_id) of this process in its cluster; (None, None) when not clustered."""
    strategy = strategy or tf.distribute.get_strategy()
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None:
        return None, None
    return resolver.task_type, resolver.task_id


def is_multi_worker(strategy=None) -> bool:
    """A MultiWorkerMirroredStrategy running on a cluster (TF_CONFIG names this task)."""
    strategy = strategy or tf.distribute.get_strategy()
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy) and task(strategy)[0] is not None


def is_chief(strategy=None) -> bool:
    """Whether this process writes the run directory: always, except on a cluster's
    non-chief tasks (TF's convention: task 'chief', else worker 0)."""
    strategy = strategy or tf.distribute.get_strategy()
    task_type, task_id = task(strategy)
    if task_type is None or task_type == "chief":
        return True
    cluster = strategy.cluster_resolver.cluster_spec().as_dict()
    return task_type == "worker" and task_id == 0 and "chief" not in cluster


def split_logical_cpus(n: int):
    """Splits the CPU into n logical devices (must run before TensorFlow initialises devices)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    return [f"/cpu:{i}" for i in range(n)]
