"""One training step of ALP or LRM on one device and on MirroredStrategy over two logical CPUs,
same global batch; prints the largest absolute difference of the updated weights.
Run as a script: logical devices must be configured before TensorFlow initialises."""

import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import numpy as np  # noqa: E402

from lrm_tf import data, models, training  # noqa: E402
from lrm_tf.config import Objective, Threat  # noqa: E402

OBJECTIVES = {
    # ALP (Kannan et al.): M-PGD + lambda * pairing, random-start PGD.
    "alp": Objective(adv_train="pgd3_xent", adv_alpha=0.5, alp_weight=0.5),
    # LRM: label smoothing + VH-mixup + decoupled pairing, adversarial examples only.
    "lrm": Objective(adv_train="pgd3_xent", adv_alpha=0.0, label_smoothing=0.1, mixup="vh_mixup", pairing_beta=1e-3,
                     pairing_ratio=0.125),
}


def one_step(strategy, objective, x, y):
    with strategy.scope():
        net = models.build_model("resnet8", (32, 32, 3), 10, seed=0,
                                 synchronized_bn=strategy.num_replicas_in_sync > 1)
        cfg = training.TrainConfig(batch_size=8, lr_values=(0.1,), lr_boundaries=(), seed=5)
        trainer = training.build_trainer(net, objective, 10, cfg, steps_per_epoch=1,
                                         threat=Threat(eps=8 / 255, eps_step=2 / 255))
    before = [w.numpy() for w in net.trainable_weights]
    trainer.fit(tf.data.Dataset.from_tensors((x, y)), epochs=1, verbose=0, shuffle=False)
    moved = max(float(np.abs(b - w.numpy()).max()) for b, w in zip(before, net.trainable_weights))
    assert moved > 1e-4, f"the step did not change the weights ({moved})"
    return [w.numpy() for w in net.weights]


if __name__ == "__main__":
    objective = OBJECTIVES[sys.argv[1]]
    a = data.synthetic_arrays("cifar10", 8, 1, seed=3)
    x, y = a.x_train.astype("float32") / 255.0, a.y_train
    single = one_step(tf.distribute.get_strategy(), objective, x, y)
    mirrored = one_step(tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), objective, x, y)
    print(max(float(np.abs(p - q).max()) for p, q in zip(single, mirrored)))
