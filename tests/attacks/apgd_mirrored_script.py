"""Run by test_attack_apgd.py in a fresh process (logical devices must be configured before
TensorFlow initialises): APGD under a two-replica MirroredStrategy on CPU against APGD on one
device. Prints one JSON object: name -> [max |difference|, max |x_adv - x|]."""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import tensorflow as tf  # noqa: E402

tf.config.set_logical_device_configuration(
    tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2
)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from attack_test_utils import make_batch, make_conv_model  # noqa: E402

from lrm_tf.attacks import build_attack  # noqa: E402
from lrm_tf.config import Threat  # noqa: E402

ATTACKS = ["apgd5_ce", "apgd5_l2_dlr", "apgd3_t"]


def main():
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    assert len(devices) == 2, devices
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        model = make_conv_model()
    x, _ = make_batch(batch=7)  # odd: the replicas get 4 and 3 examples
    y = tf.argmax(model(x), -1)  # APGD attacks only clean-correct points
    seed = tf.constant([11, 12], tf.int64)
    split = [0, 4, 7]

    def per_replica(values):
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: values[split[ctx.replica_id_in_sync_group] : split[ctx.replica_id_in_sync_group + 1]]
        )

    x_dist, y_dist = per_replica(x), per_replica(y)
    report = {"replicas": strategy.num_replicas_in_sync}
    for name in ATTACKS:
        attack = build_attack(name, model, Threat(eps=0.1, eps_step=0.1, restarts=2))
        single = tf.function(attack)(x, y, seed)
        distributed_fn = tf.function(lambda xs, ys: strategy.run(attack, args=(xs, ys, seed)))
        gathered = strategy.gather(distributed_fn(x_dist, y_dist), axis=0)
        report[name] = [
            float(tf.reduce_max(tf.abs(gathered - single))),
            float(tf.reduce_max(tf.abs(single - x))),
        ]
    print(json.dumps(report))


if __name__ == "__main__":
    main()
