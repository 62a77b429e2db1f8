"""Sanity of the attack suite on real MNIST (a small version of the BUILD_NOTES measurement):
an undefended model falls to PGD-40 at eps 0.3, FGSM is weaker than PGD, and accuracy never
rises with eps and reaches ~0 at eps = 1 (Shafahi et al. table 9's unbounded check)."""

import pytest

from lrm_tf import data, models, training
from lrm_tf.config import Threat
from lrm_tf.eval import curves, evaluation
from lrm_tf.objectives.compose import Objective
from lrm_tf.report.rundir import RunDir


@pytest.fixture(scope="module")
def mnist_model(mnist_dir, tmp_path_factory):
    a = data.load_arrays("mnist", local_data=mnist_dir)
    cfg = training.TrainConfig(
        batch_size=64,
        train_steps=150,
        optimizer="adam",
        lr_values=(1e-3,),
        lr_boundaries=(),
        weight_decay=0.0,
        train_limit=9600,
        verbose=0,
    )
    net = training.train(
        lambda: models.build_model("mnist_cnn", (28, 28, 1), 10, seed=0),
        Objective(),
        a,
        RunDir(str(tmp_path_factory.mktemp("run"))),
        cfg,
    )
    return net, data.to_float(a.x_test[:200]).numpy(), a.y_test[:200]


def test_undefended_mnist_model_falls_to_pgd(mnist_model):
    net, x, y = mnist_model
    threat = Threat(eps=0.3, eps_step=0.01)
    results = evaluation.evaluate_attacks(
        net, x, y, ["clean", "fgsm_xent", "pgd40_xent"], threat, batch_size=100, log=lambda s: None
    )
    acc = {k: v["accuracy"] for k, v in results.items()}
    assert acc["clean"] >= 0.9
    assert acc["pgd40_xent"] <= 0.05
    # At eps 0.3 both reach ~0 on this briefly trained model; compare at a budget both leave room.
    small = Threat(eps=0.1, eps_step=0.01)
    fgsm, _ = evaluation.attack_accuracy(net, x, y, "fgsm_xent", small, 100, progress=False)
    pgd, _ = evaluation.attack_accuracy(net, x, y, "pgd40_xent", small, 100, progress=False)
    assert fgsm > pgd + 0.05, (fgsm, pgd)


def test_eps_sweep_is_monotone_and_unbounded_eps_breaks_everything(mnist_model):
    net, x, y = mnist_model
    curve = curves.eps_sweep(net, x[:100], y[:100], [0.0, 0.05, 0.1, 0.2, 0.3, 1.0], steps=20, batch_size=100)
    accs = [p["accuracy"] for p in curve["points"]]
    assert all(b <= a for a, b in zip(accs, accs[1:])), accs
    assert accs[0] >= 0.9 and accs[-1] <= 0.01
