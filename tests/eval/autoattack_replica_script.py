"""The ensemble's measurements of the mirrored test: `measure(model, strategy)`.

Run as a script in a fresh process (logical CPU devices must be configured before TensorFlow
initialises): `python autoattack_replica_script.py MODEL.keras REPLICAS` runs a short version of
AutoAttack's standard ensemble under a MirroredStrategy of REPLICAS logical CPUs and prints
`measure`'s JSON object.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# AutoAttack's standard stages with a few iterations: the same code paths, seconds to run.
MINI = "mini_aa"
STAGES = (("apgd5_ce", 0, False), ("apgd5_t", 9, False), ("fab5_t", 9, False), ("square20", 0, True))


def register_mini():
    """Registers the ensemble 'mini_aa' (returns its name)."""
    from lrm_tf.attacks import ensemble, registry

    ensemble.ENSEMBLES[MINI] = tuple(ensemble.Stage(a, targets=t, black_box=b) for a, t, b in STAGES)
    registry.FAMILIES[MINI] = ensemble.ensemble_family(MINI)
    return MINI


def measure(model, strategy) -> dict:
    """{"replicas", "correct": {batch_size: per-example list}, "stages": robust accuracies,
    "x_adv": the adversarial examples (batch size 10)} on the 37 digits test images."""
    from eval_test_utils import digits_test_images

    from lrm_tf.config import Threat
    from lrm_tf.eval import evaluation

    threat = Threat(eps=0.1, eps_step=0.025)
    x, y = digits_test_images()
    name = register_mini()
    report = {"replicas": strategy.num_replicas_in_sync, "correct": {}}
    for bs in (10, 37):
        outcome = evaluation.attack_outcome(
            model, x, y, name, threat, bs, 0, strategy, False, keep_adversarial=True, log=lambda s: None
        )
        report["correct"][str(bs)] = outcome.correct.astype(int).tolist()
        if bs == 10:
            report["stages"] = [s["robust_accuracy"] for s in outcome.details["stages"]]
            report["x_adv"] = outcome.x_adv.tolist()
    return report


if __name__ == "__main__":
    from replica_main import run

    run(measure)
