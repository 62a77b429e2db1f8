"""Evaluation measurements of the batching tests: `measure(model, strategy)`.

Run as a script in a fresh process (logical CPU devices must be configured before TensorFlow
initialises): `python replica_eval_script.py MODEL.keras REPLICAS` evaluates under a
MirroredStrategy of REPLICAS logical CPUs and prints `measure`'s JSON object.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

ATTACKS = ("clean", "pgd5_xent", "spsa3")
BATCH_SIZES = (1, 7, 10, 37)


def measure(model, strategy) -> dict:
    """{"accuracy": {attack: {batch_size: accuracy}} on the 37 digits test images,
    "few": {attack: {examples: accuracy}} on 1 and 2 examples (fewer than the replicas),
    "adversarial_1": PGD's x_adv of the first image, "transfer_1": its transfer accuracy}."""
    from eval_test_utils import digits_test_images

    from lrm_tf.config import SpsaOptions, Threat
    from lrm_tf.eval import evaluation, transfer

    # Two restarts: PGD's and SPSA's worst case over random starts must be per example too.
    threat = Threat(eps=0.15, eps_step=0.0375, restarts=2)
    spsa = SpsaOptions(spsa_samples=8, spsa_lr=0.05)
    x, y = digits_test_images()

    def accuracy(attack, images, labels, batch_size):
        acc, _ = evaluation.attack_accuracy(
            model, images, labels, attack, threat, batch_size, 0, strategy, progress=False, spsa=spsa
        )
        return acc

    report = {"replicas": strategy.num_replicas_in_sync, "accuracy": {}, "few": {}}
    for attack in ATTACKS:
        report["accuracy"][attack] = {str(bs): accuracy(attack, x, y, bs) for bs in BATCH_SIZES}
    for attack in ATTACKS[:2]:
        report["few"][attack] = {str(n): accuracy(attack, x[:n], y[:n], 500) for n in (1, 2)}
    adv, _ = evaluation.adversarial_examples(model, x[:1], y[:1], "pgd5_xent", threat, 500, 0, strategy)
    report["adversarial_1"] = adv.tolist()
    matrix = transfer.transfer_matrix(
        {"m": model}, {"m": model}, x[:1], y[:1], "pgd5_xent", threat, strategy=strategy
    )
    report["transfer_1"] = matrix["accuracy"]["m"]["m"]
    return report


if __name__ == "__main__":
    from replica_main import run

    run(measure)
