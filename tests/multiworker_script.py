"""A few training steps with lrm_tf.training.train on the embedded digits, as one worker of a
MultiWorkerMirroredStrategy cluster (TF_CONFIG set) or as a single process (TF_CONFIG unset).

    python tests/multiworker_script.py RUN_DIR WEIGHTS.npz [STEPS]

Run as a script: the multi-worker strategy must be created before TensorFlow initialises.
Writes the network's weights before and after training (final_i, initial_i; the initial ones
are those of a fresh build, before any checkpoint is restored) to WEIGHTS.npz, on every worker.
"""

import json
import os
import sys

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import tensorflow as tf  # noqa: E402,F401

from lrm_tf.training import distribute  # noqa: E402

strategy = distribute.make_strategy("multiworker" if os.environ.get("TF_CONFIG") else "default")

import numpy as np  # noqa: E402

from lrm_tf import data, models, training  # noqa: E402
from lrm_tf.config import Objective, Threat  # noqa: E402
from lrm_tf.report.rundir import RunDir  # noqa: E402


def main(run_dir, weights_path, steps):
    arrays = data.load_arrays("digits")
    cfg = training.TrainConfig(
        batch_size=32,
        train_steps=steps,
        lr_values=(0.05,),
        lr_boundaries=(),
        weight_decay=2e-4,
        seed=0,
        verbose=0,
    )
    # M-PGD with a 2-step attack: the attack's loop and random start run on every worker.
    objective = Objective(adv_train="pgd2_xent", adv_alpha=0.5)
    initial = []

    def build():
        net = models.build_model("mnist_cnn", (8, 8, 1), 10, seed=0)
        initial.extend(np.asarray(w.numpy()) for w in net.weights)
        return net

    net = training.train(
        build,
        objective,
        arrays,
        RunDir(run_dir),
        cfg,
        Threat(eps=0.3, eps_step=0.1),
        strategy=strategy,
        log=lambda m: print(m, flush=True),
    )
    final = [np.asarray(w.numpy()) for w in net.weights]
    np.savez(
        weights_path,
        **{f"final_{i}": w for i, w in enumerate(final)},
        **{f"initial_{i}": w for i, w in enumerate(initial)},
    )
    print(
        json.dumps(
            {
                "task": distribute.task(strategy),
                "chief": distribute.is_chief(strategy),
                "replicas": strategy.num_replicas_in_sync,
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2], int(sys.argv[3]) if len(sys.argv) > 3 else 3)
