"""One training step on one device and on MirroredStrategy over two logical CPUs, same global
batch, for each named case; prints one line per case: its name and the largest absolute
difference of the updated weights. Run as a script (logical devices must be configured before
TensorFlow initialises):

    python mirrored_step_script.py alp lrm clean_pairing ...

A name ending in "/local" runs that case with the global-batch gather of the batch-level
terms switched off (each replica computes them on its own share): the mistake the test is
there to catch, so its difference shows what the tolerance must stay below.
"""

import sys

import tensorflow as tf

cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)

import numpy as np  # noqa: E402

from lrm_tf import data, models, training  # noqa: E402
from lrm_tf.config import Objective, Threat  # noqa: E402
from lrm_tf.objectives import terms  # noqa: E402

THREAT = Threat(eps=8 / 255, eps_step=2 / 255)
CASES = {
    # ALP (Kannan et al.): M-PGD + lambda * pairing, random-start PGD.
    "alp": Objective(adv_train="pgd3_xent", adv_alpha=0.5, alp_weight=0.5),
    # LRM: label smoothing + VH-mixup + decoupled pairing, adversarial examples only.
    "lrm": Objective(
        adv_train="pgd3_xent",
        adv_alpha=0.0,
        label_smoothing=0.1,
        mixup="vh_mixup",
        pairing_beta=1e-3,
        pairing_ratio=0.125,
    ),
    "clean": Objective(),
    # Madry et al.: adversarial examples only.
    "madry": Objective(adv_train="pgd3_xent", adv_alpha=0.0),
    "squeeze_batch": Objective(logit_squeeze=0.5),
    "squeeze_example": Objective(adv_train="pgd3_xent", logit_squeeze=0.5, logit_squeeze_form="example"),
    "similarity": Objective(logit_similarity=2.0),
    # Clean logit pairing pairs i with i + m/2 of the global batch.
    "clean_pairing": Objective(clean_pairing=0.7, label_smoothing=0.1, pairing_distance="l2"),
    "noise_mixup": Objective(noise_sigma=0.1, mixup="mixup"),
}


def one_step(strategy, objective, x, y):
    with strategy.scope():
        net = models.build_model(
            "resnet8", (32, 32, 3), 10, seed=0, synchronized_bn=strategy.num_replicas_in_sync > 1
        )
        cfg = training.TrainConfig(batch_size=8, lr_values=(0.1,), lr_boundaries=(), seed=5)
        trainer = training.build_trainer(net, objective, 10, cfg, steps_per_epoch=1, threat=THREAT)
    before = [w.numpy() for w in net.trainable_weights]
    trainer.fit(tf.data.Dataset.from_tensors((x, y)), epochs=1, verbose=0, shuffle=False)
    moved = max(float(np.abs(b - w.numpy()).max()) for b, w in zip(before, net.trainable_weights))
    assert moved > 1e-4, f"the step did not change the weights ({moved})"
    return [w.numpy() for w in net.weights]


if __name__ == "__main__":
    a = data.synthetic_arrays("cifar10", 8, 1, seed=3)
    x, y = a.x_train.astype("float32") / 255.0, a.y_train
    mirrored_strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
    singles = {}  # a mutant compares with its case's one-device step, computed once
    for name in sys.argv[1:]:
        case, local = name.removesuffix("/local"), name.endswith("/local")
        if case not in singles:
            singles[case] = one_step(tf.distribute.get_strategy(), CASES[case], x, y)
        single = singles[case]
        gather, mean = terms.global_batch, terms.global_mean
        if local:
            terms.global_batch, terms.global_mean = (lambda t: t), (lambda t: t)
        try:
            mirrored = one_step(mirrored_strategy, CASES[case], x, y)
        finally:
            terms.global_batch, terms.global_mean = gather, mean
        print(name, max(float(np.abs(p - q).max()) for p, q in zip(single, mirrored)), flush=True)
