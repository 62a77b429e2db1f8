"""AutoAttack's orchestration (Croce & Hein 2020, arXiv:2003.01690, section 4) with stand-in
attacks whose effect is known: stage order, only the robust points attacked, each stage from
the clean input, per-stage accuracies, the checks as warnings; then the real attacks."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf
from eval_test_utils import digits_test_images, train_digits_model

from lrm_tf.attacks import build_attack, ensemble, parse_attack, registry
from lrm_tf.attacks.spec import AttackFamily
from lrm_tf.config import Threat
from lrm_tf.eval import autoattack, evaluation, transfer
from lrm_tf.eval.batching import map_batches

N = 40
THREAT = Threat(eps=0.3, eps_step=0.1)


def standin_images(classes: int = 10):
    """Images [N, 2, 2, 1]: pixel (0, 0) codes the class the stand-in model predicts, pixel
    (1, 1) the example's id; ids % 5 == 0 are misclassified."""
    ids = np.arange(N)
    labels = (ids * 7) % classes
    predicted = np.where(ids % 5 == 0, (labels + 1) % classes, labels)
    x = np.zeros([N, 2, 2, 1], np.float32)
    x[:, 0, 0, 0] = predicted / (classes - 1)
    x[:, 1, 1, 0] = ids / 100
    return x, labels.astype(np.int64), ids


def standin_model(classes: int = 10, transform=None):
    """Logits -|k - (K-1) x00| - 0.01 k: the predicted class is the one pixel (0, 0) codes
    (the small slope breaks the runner-up tie, which would make DLR constant)."""

    def logits_fn(x):
        code = (classes - 1) * tf.cast(x[:, 0, 0, 0], tf.float32)
        k = tf.range(classes, dtype=tf.float32)[None, :]
        logits = -tf.abs(k - code[:, None]) - 0.01 * k
        return transform(logits) if transform else logits

    return logits_fn


def breaker_family(seen: dict, classes: int = 10):
    """'breakerK' moves the examples with id % 4 == K - 1 to a wrong class and records the
    ids and images it was given."""

    def build(spec, logits_fn, threat, options):
        stage = spec.steps

        def record(x):
            seen.setdefault(stage, []).append(np.array(x))
            return np.float32(0)

        def run(x, labels, seed):
            tf.numpy_function(record, [x], tf.float32)
            ids = tf.cast(tf.round(x[:, 1, 1, 0] * 100), tf.int64)
            wrong = tf.cast((labels + 1) % classes, tf.float32) / (classes - 1)
            hit = ids % 4 == stage - 1
            x00 = tf.where(hit, wrong, x[:, 0, 0, 0])
            mask = tf.one_hot([0], 4, dtype=x.dtype)  # pixel (0, 0) of the flattened image
            flat = tf.reshape(x, [-1, 4])
            flat = flat * (1 - mask) + x00[:, None] * mask
            return tf.reshape(flat, tf.shape(x))

        return run

    return AttackFamily(name="breaker", build=build, multi_step=True)


@pytest.fixture(scope="module")
def digits_model_and_images():
    x, y = digits_test_images()
    return train_digits_model(), x, y


@pytest.fixture
def standin(monkeypatch):
    """Registers 'breaker' and the ensemble 'standin' = breaker1, breaker2 (9 targets), breaker3
    (black box); returns the dict of what each stage saw."""
    seen = {}

    def install(classes=10, stages=None):
        stages = stages or (
            ensemble.Stage("breaker1"),
            ensemble.Stage("breaker2", targets=9),
            ensemble.Stage("breaker3", black_box=True),
        )
        monkeypatch.setitem(registry.FAMILIES, "breaker", breaker_family(seen, classes))
        monkeypatch.setitem(ensemble.ENSEMBLES, "standin", stages)
        monkeypatch.setitem(registry.FAMILIES, "standin", ensemble.ensemble_family("standin"))
        return seen

    return install


def run(model, x, y, name="standin", batch_size=16, **kw):
    return autoattack.run_ensemble(
        model, x, y, parse_attack(name), THREAT, batch_size, progress=False, log=lambda s: None, **kw
    )


def test_stages_run_in_order_on_the_robust_points_from_the_clean_input(standin):
    seen = standin()
    x, y, ids = standin_images()
    outcome = run(standin_model(), x, y, keep_adversarial=True)
    clean_correct = ids % 5 != 0
    robust = clean_correct.copy()
    for stage in (1, 2, 3):
        images = np.concatenate(seen[stage])
        got = np.round(images[:, 1, 1, 0] * 100).astype(int)
        assert sorted(got) == sorted(ids[robust]), stage  # only the points still robust
        np.testing.assert_array_equal(images, x[got])  # each stage from the clean input
        robust &= ids % 4 != stage - 1
    np.testing.assert_array_equal(outcome.correct, robust)
    stages = outcome.details["stages"]
    assert [s["attack"] for s in stages] == ["clean", "breaker1", "breaker2", "breaker3"]
    expected = [clean_correct.mean()] + [
        (clean_correct & np.all([ids % 4 != k for k in range(j)], axis=0)).mean() for j in (1, 2, 3)
    ]
    np.testing.assert_allclose([s["robust_accuracy"] for s in stages], expected)
    accuracies = [s["robust_accuracy"] for s in stages]
    assert accuracies == sorted(accuracies, reverse=True)  # monotone
    assert [s["attacked"] for s in stages[1:]] == [
        int(clean_correct.sum()),
        *[s["attacked"] - s["broken"] for s in stages[1:3]],
    ]
    # The adversarial examples: the breaking stage's for broken points, the clean x otherwise.
    pred = np.argmax(standin_model()(outcome.x_adv).numpy(), 1)
    np.testing.assert_array_equal(pred == y, robust)
    np.testing.assert_array_equal(outcome.x_adv[robust], x[robust])


def test_batch_size_does_not_change_the_result_and_in_graph_build_agrees(standin):
    standin()
    x, y, _ = standin_images()
    outcomes = [run(standin_model(), x, y, batch_size=bs, keep_adversarial=True) for bs in (1, 7, 40)]
    for o in outcomes[1:]:
        np.testing.assert_array_equal(o.correct, outcomes[0].correct)
        np.testing.assert_array_equal(o.x_adv, outcomes[0].x_adv)
    # build_attack('standin'): the same adversarial examples from one in-graph function.
    attack = build_attack("standin", standin_model(), THREAT)
    x_adv = np.concatenate([v for _, v in map_batches(attack, x, y, 16, 0, tf.distribute.get_strategy())])
    np.testing.assert_array_equal(x_adv, outcomes[0].x_adv)


def test_black_box_stage_beating_the_white_box_stages_is_a_warning(standin):
    standin()
    x, y, _ = standin_images()
    warnings = run(standin_model(), x, y).details["warnings"]
    assert any("breaker3 (black-box)" in w and "gradient masking" in w for w in warnings)
    standin(stages=(ensemble.Stage("breaker1"), ensemble.Stage("breaker3")))
    assert not any("black-box" in w for w in run(standin_model(), x, y).details["warnings"])


def test_more_targets_than_classes_is_a_warning(standin):
    standin(classes=5)
    x, y, _ = standin_images(classes=5)
    warnings = run(standin_model(5), x, y).details["warnings"]
    assert any("9 target classes, more than classes - 1 = 4" in w for w in warnings)
    standin()
    x, y, _ = standin_images()
    assert not any("target classes" in w for w in run(standin_model(), x, y).details["warnings"])


def test_softmax_random_and_zero_gradient_models_are_warnings(standin):
    standin()
    x, y, _ = standin_images()
    assert run(standin_model(), x, y).details["warnings"] == [
        w for w in run(standin_model(), x, y).details["warnings"] if "black-box" in w
    ]  # a deterministic logit model with gradients: only the black-box warning
    softmax = run(standin_model(transform=tf.nn.softmax), x, y).details["warnings"]
    assert any("look like probabilities" in w for w in softmax)
    noisy = run(standin_model(transform=lambda z: z + tf.random.normal(tf.shape(z), stddev=0.01)), x, y)
    assert any("randomised" in w and "autoattack_rand" in w for w in noisy.details["warnings"])
    masked = run(standin_model(transform=tf.stop_gradient), x, y).details["warnings"]
    correct = N - N // 5  # ids % 5 == 0 are misclassified
    assert any(
        f"{correct} of the {correct} clean-correct points have a zero DLR gradient" in w for w in masked
    )


def test_zero_dlr_gradient_counts_only_the_clean_correct_points():
    # Columns: clean-correct, outputs differ, probabilities, largest |DLR gradient|. A
    # misclassified point whose label is the third logit has a constant DLR: not a warning.
    spec = parse_attack("autoattack")
    misclassified_zero = np.array([[1, 0, 0, 0.5], [0, 0, 0, 0.0], [0, 0, 0, 0.0]], np.float32)
    assert not any("zero DLR" in w for w in autoattack.check_warnings(misclassified_zero, 10, spec))
    correct_zero = np.array([[1, 0, 0, 0.5], [1, 0, 0, 0.0], [0, 0, 0, 0.0]], np.float32)
    warnings = autoattack.check_warnings(correct_zero, 10, spec)
    assert any("1 of the 2 clean-correct points have a zero DLR gradient" in w for w in warnings)


def test_evaluate_attacks_reports_the_ensemble_row(standin):
    standin()
    x, y, ids = standin_images()
    results = evaluation.evaluate_attacks(
        standin_model(), x, y, ["clean", "standin"], THREAT, batch_size=16, log=lambda s: None
    )
    row = results["standin"]
    assert row["params"] == {
        "family": "standin",
        "eps": 0.3,
        "norm": "linf",
        "attacks": ["breaker1", "breaker2", "breaker3"],
    }
    assert row["accuracy"] == row["stages"][-1]["robust_accuracy"]
    assert row["clean_accuracy"] == results["clean"]["accuracy"]
    assert results["worst_case"]["accuracy"] == row["accuracy"]  # the ensemble already is the worst case
    md = evaluation.results_markdown(results)
    assert "standin robust accuracy after each stage: clean 80.00% -> breaker1" in md
    assert "**Warning (standin):**" in md


def test_autoattack_names_its_standard_stages():
    spec = parse_attack("autoattack")
    assert [s.name for _, s in ensemble.stage_specs(spec)] == ["apgd_ce", "apgd_t", "fab_t", "square"]
    assert [s.steps for _, s in ensemble.stage_specs(spec)] == [100, 100, 100, 5000]
    l2 = ensemble.stage_specs(parse_attack("autoattack_l2"))
    assert {s.norm for _, s in l2} == {"l2"}
    rand = ensemble.stage_specs(parse_attack("autoattack_rand"))
    assert [s.name for _, s in rand] == ["apgd_ce", "apgd_dlr"]
    assert all(ensemble.stage_options(st, s).eot_iter == 20 for st, s in rand)


def test_cheap_ensemble_of_the_real_attacks_on_digits(monkeypatch, digits_model_and_images):
    # The standard stages at a tenth of their iterations, on the digits CNN.
    stages = (
        ensemble.Stage("apgd10_ce"),
        ensemble.Stage("apgd10_t", targets=9),
        ensemble.Stage("fab10_t", targets=9),
        ensemble.Stage("square50", black_box=True),
    )
    monkeypatch.setitem(ensemble.ENSEMBLES, "mini_aa", stages)
    monkeypatch.setitem(registry.FAMILIES, "mini_aa", ensemble.ensemble_family("mini_aa"))
    model, x, y = digits_model_and_images
    threat = Threat(eps=0.1, eps_step=0.025)
    outcomes = [
        autoattack.run_ensemble(
            model, x, y, parse_attack("mini_aa"), threat, bs, progress=False, log=lambda s: None
        )
        for bs in (7, 37)
    ]
    np.testing.assert_array_equal(outcomes[0].correct, outcomes[1].correct)
    stages = outcomes[0].details["stages"]
    accuracies = [s["robust_accuracy"] for s in stages]
    assert accuracies == sorted(accuracies, reverse=True)
    apgd = evaluation.attack_outcome(model, x, y, "apgd10_ce", threat, progress=False)
    clean = evaluation.attack_outcome(model, x, y, "clean", threat, progress=False)
    assert accuracies[1] == np.mean(apgd.correct & clean.correct)  # APGD-CE on the clean-correct points
    assert outcomes[0].details["max_perturbation"] <= 0.1 + 1e-6


def test_mirrored_ensemble_equals_one_device(tmp_path, digits_model_and_images):
    # Two logical CPUs (a fresh process: devices are configured before TensorFlow starts).
    from autoattack_replica_script import measure

    model = digits_model_and_images[0]
    path = str(tmp_path / "digits.keras")
    model.save(path)
    single = measure(model, tf.distribute.get_strategy())
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "autoattack_replica_script.py")
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3", "TF_ENABLE_ONEDNN_OPTS": "1"}
    result = subprocess.run(
        [sys.executable, script, path, "2"], capture_output=True, text=True, timeout=600, env=env
    )
    assert result.returncode == 0, result.stderr[-3000:]
    mirrored = json.loads(result.stdout.strip().splitlines()[-1])
    assert mirrored["replicas"] == 2
    assert mirrored["correct"] == single["correct"]
    assert single["correct"]["10"] == single["correct"]["37"]  # nor the batch size
    assert mirrored["stages"] == single["stages"]
    assert single["stages"][-1] < single["stages"][0]  # the attacks did something
    np.testing.assert_allclose(mirrored["x_adv"], single["x_adv"], atol=1e-5)


def test_transfer_and_adversarial_examples_accept_an_ensemble(standin):
    standin()
    x, y, _ = standin_images()
    model = standin_model()
    matrix = transfer.transfer_matrix({"m": model}, {"m": model}, x, y, "standin", THREAT, batch_size=16)
    white_box, _ = evaluation.attack_accuracy(model, x, y, "standin", THREAT, 16, progress=False)
    assert matrix["accuracy"]["m"]["m"] == white_box == run(model, x, y).correct.mean()
