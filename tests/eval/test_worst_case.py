"""The per-example worst case over all attacks (the `worst_case` row), the arrays written beside
results.json, and --save_adversarial's files."""

import json
import os

import numpy as np
import pytest
from eval_test_utils import digits_test_images, train_digits_model

from lrm_tf.config import Threat
from lrm_tf.eval import evaluation, worst_case
from lrm_tf.report.rundir import RunDir

THREAT = Threat(eps=0.1, eps_step=0.025)
ATTACKS = ["clean", "fgsm_xent", "pgd5_xent", "pgd5_cw"]


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    model = train_digits_model()
    x, y = digits_test_images()
    out = str(tmp_path_factory.mktemp("run"))
    results = evaluation.evaluate_attacks(
        model, x, y, ATTACKS, THREAT, batch_size=10, log=lambda s: None, save_adversarial=out
    )
    evaluation.write_results(RunDir(out), results, "digits")
    return model, x, y, out, results


def test_worst_case_row_is_the_per_example_and_of_every_attack(evaluated):
    _, _, y, _, results = evaluated
    assert list(results) == [*ATTACKS, "worst_case"]
    robust = np.all([results.per_example[a] for a in ATTACKS], axis=0)
    np.testing.assert_array_equal(results.per_example["worst_case"], robust)
    row = results["worst_case"]
    assert row["accuracy"] == robust.mean() and row["examples"] == len(y)
    assert row["params"] == {"family": "worst_case", "attacks": ATTACKS}
    assert row["accuracy"] <= min(results[a]["accuracy"] for a in ATTACKS)
    for a in ATTACKS:
        assert results[a]["accuracy"] == results.per_example[a].mean()


def test_results_files_hold_the_per_example_arrays_and_the_worst_case_row(evaluated):
    _, _, y, out, results = evaluated
    saved = json.load(open(os.path.join(out, "results.json")))
    assert set(saved) == {*ATTACKS, "worst_case"}
    arrays = worst_case.read_per_example(out)
    assert set(arrays) == {*ATTACKS, "worst_case"}
    for name, row in saved.items():
        assert row["per_example"] == {"file": "results_per_example.npz", "key": name}
        assert arrays[name].dtype == bool and arrays[name].shape == (len(y),)
        np.testing.assert_array_equal(arrays[name], results.per_example[name])
        assert row["accuracy"] == pytest.approx(arrays[name].mean())
    md = open(os.path.join(out, "results.md")).read()
    assert f"| worst_case | {100 * saved['worst_case']['accuracy']:.2f}% | {len(y)} |" in md
    assert "correctly classified under every attack" in md


def test_save_adversarial_writes_every_attack_and_they_score_as_reported(evaluated):
    model, x, y, out, results = evaluated
    assert not os.path.exists(worst_case.adversarial_path(out, "clean"))
    for name in ATTACKS[1:]:
        with np.load(worst_case.adversarial_path(out, name)) as f:
            x_adv, labels, correct = f["x_adv"], f["labels"], f["correct"]
        assert x_adv.shape == x.shape and x_adv.dtype == np.float32
        np.testing.assert_array_equal(labels, y)
        np.testing.assert_array_equal(correct, results.per_example[name])
        assert np.max(np.abs(x_adv - x)) <= THREAT.eps + 1e-6
        scored = np.argmax(model(x_adv, training=False).numpy(), axis=1) == y
        np.testing.assert_array_equal(scored, correct)


def test_an_attack_on_a_prefix_bounds_the_worst_case():
    row, robust = worst_case.worst_case_row(
        {"clean": np.array([1, 1, 0, 1], bool), "spsa10": np.array([0, 1], bool)}
    )
    assert row["examples"] == 2 and row["accuracy"] == 0.5
    np.testing.assert_array_equal(robust, [False, True])
    with pytest.raises(ValueError, match="at least one attack"):
        worst_case.worst_case_row({})
