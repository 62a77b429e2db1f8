"""Run by the attack tests in a fresh process (logical devices must be configured before
TensorFlow initialises): attacks under a two-replica MirroredStrategy on CPU against the same
attacks on one device. Prints one JSON object: attack name -> max |difference|, and
name + "/moved" -> max |x_adv - x|.

`python mirrored_attack_script.py [ATTACK ...] [--predicted_labels] [--l2_eps=E]`: the attacks
(default ATTACKS); --predicted_labels attacks the model's own predictions instead of the
batch's labels (for attacks that leave clean-misclassified examples alone: APGD, FAB, Square);
--l2_eps: the eps of L2 attacks (default 0.1, as L-inf's)."""

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

from lrm_tf.attacks import build_attack, parse_attack  # noqa: E402
from lrm_tf.config import SpsaOptions, Threat  # noqa: E402

ATTACKS = [
    "clean",
    "fgsm_xent",
    "rfgsm_xent",
    "pgd5_xent",
    "pgd5_l2_cw",
    "iter5_ll",
    "pgd5_rand",
    "r_step_rand",
    "spsa3",
]


def main(attacks=ATTACKS, predicted_labels=False, l2_eps=0.1):
    devices = [d.name for d in tf.config.list_logical_devices("CPU")]
    assert len(devices) == 2, devices
    strategy = tf.distribute.MirroredStrategy(devices)
    with strategy.scope():
        model = make_conv_model()
    x, y = make_batch(batch=7)  # odd: the replicas get 4 and 3 examples
    if predicted_labels:
        y = tf.argmax(model(x), -1)
    seed = tf.constant([11, 12], tf.int64)
    split = [0, 4, 7]

    def per_replica(values):
        return strategy.experimental_distribute_values_from_function(
            lambda ctx: values[split[ctx.replica_id_in_sync_group] : split[ctx.replica_id_in_sync_group + 1]]
        )

    x_dist, y_dist = per_replica(x), per_replica(y)
    report = {"replicas": strategy.num_replicas_in_sync}
    for name in attacks:
        eps = l2_eps if parse_attack(name).norm == "l2" else 0.1
        attack = build_attack(
            name, model, Threat(eps=eps, eps_step=0.03, restarts=2), SpsaOptions(spsa_samples=8)
        )
        single = tf.function(attack)(x, y, seed)
        distributed_fn = tf.function(lambda xs, ys: strategy.run(attack, args=(xs, ys, seed)))
        gathered = strategy.gather(distributed_fn(x_dist, y_dist), axis=0)
        report[name] = float(tf.reduce_max(tf.abs(gathered - single)))
        report[name + "/moved"] = float(tf.reduce_max(tf.abs(single - x)))
    print(json.dumps(report))


if __name__ == "__main__":
    names = [a for a in sys.argv[1:] if not a.startswith("--")]
    l2_eps = [float(a.split("=")[1]) for a in sys.argv[1:] if a.startswith("--l2_eps=")]
    main(names or ATTACKS, predicted_labels="--predicted_labels" in sys.argv, l2_eps=(l2_eps or [0.1])[0])
