import json

import pytest
import tensorflow as tf

from lrm_tf import data, export, models, training
from lrm_tf.config import Threat
from lrm_tf.eval import evaluation
from lrm_tf.objectives.compose import Objective
from lrm_tf.report.rundir import RunDir


@pytest.fixture(scope="module")
def digits_model(tmp_path_factory):
    a = data.load_arrays("digits")
    run = RunDir(str(tmp_path_factory.mktemp("run")))
    cfg = training.TrainConfig(
        batch_size=32, train_epochs=4, lr_values=(0.02,), lr_boundaries=(), weight_decay=0.0, verbose=0
    )
    net = training.train(
        lambda: models.build_model("mnist_cnn", (8, 8, 1), 10, seed=0), Objective(), a, run, cfg
    )
    export.export_saved_model(net, run.saved_model)
    x = data.to_float(a.x_test[:120]).numpy()
    return net, run, x, a.y_test[:120]


def test_pgd_on_saved_model_equals_in_memory(digits_model):
    net, run, x, y = digits_model
    threat = Threat(eps=0.1, eps_step=0.02)
    loaded = tf.saved_model.load(run.saved_model)
    acc_mem, n = evaluation.attack_accuracy(
        net, x, y, "pgd10_xent", threat, batch_size=50, seed=7, progress=False
    )
    acc_saved, _ = evaluation.attack_accuracy(
        loaded, x, y, "pgd10_xent", threat, batch_size=50, seed=7, progress=False
    )
    clean, _ = evaluation.attack_accuracy(net, x, y, "clean", threat, progress=False)
    assert n == 120 and acc_mem == acc_saved
    assert acc_mem < clean  # the attack did something


def test_results_files_are_laid_out_like_the_papers(digits_model, tmp_path):
    net, _, x, y = digits_model
    threat = Threat(eps=0.3, eps_step=0.01, restarts=2)
    results = evaluation.evaluate_attacks(
        net, x, y, ["clean", "fgsm_xent", "pgd5_cw"], threat, batch_size=60, log=lambda s: None
    )
    run = RunDir(str(tmp_path))
    evaluation.write_results(run, results, "digits test")
    saved = json.load(open(run.results_json))
    assert list(saved) == ["clean", "fgsm_xent", "pgd5_cw", "worst_case"]
    assert saved["pgd5_cw"]["params"]["restarts"] == 2 and saved["pgd5_cw"]["params"]["loss"] == "cw"
    md = open(run.results_md).read()
    assert "| pgd5_cw |" in md and f"{100 * saved['clean']['accuracy']:.2f}%" in md
