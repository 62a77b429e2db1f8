"""tf.distribute strategy by name (SPEC 5: one device, several GPUs, several hosts, TPU)."""

from __future__ import annotations

from typing import Sequence

import tensorflow as tf

STRATEGIES = ("default", "mirrored", "multiworker", "tpu")


def make_strategy(name: str = "default", devices: Sequence[str] = (), num_gpus: int = 0,
                  tpu: str = "") -> tf.distribute.Strategy:
    """`devices` (e.g. ['/cpu:0', '/cpu:1']) or `num_gpus` select MirroredStrategy's replicas."""
    if name == "default":
        return tf.distribute.get_strategy()
    if name == "mirrored":
        if not devices and num_gpus:
            devices = [f"/gpu:{i}" for i in range(num_gpus)]
        return tf.distribute.MirroredStrategy(devices=list(devices) or None)
    if name == "multiworker":
        # Cluster from TF_CONFIG; every worker runs the same command.
        return tf.distribute.MultiWorkerMirroredStrategy()
    if name == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")


def split_logical_cpus(n: int):
    """Splits the CPU into n logical devices (must run before TensorFlow initialises devices)."""
    cpu = tf.config.list_physical_devices("CPU")[0]
    tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * n)
    return [f"/cpu:{i}" for i in range(n)]
