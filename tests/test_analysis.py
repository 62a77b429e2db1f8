"""The papers' analyses (LRM figs. 1-2, Shafahi et al. eq. 4 and figs. 9-11): closed forms on
linear models, manual activations, PNGs."""

import json
import os

import keras
import numpy as np
import pytest
from test_curves import assert_valid_png

from lrm_tf import data, export
from lrm_tf.config import AnalysisConfig, Threat
from lrm_tf.eval import analysis, evaluation

EXAMPLES = 64


def _linear_model(seed=0, shape=(8, 8, 1)):
    keras.utils.set_random_seed(seed)
    init = keras.initializers.RandomNormal(stddev=0.3, seed=seed)
    inputs = keras.Input(shape)
    logits = keras.layers.Dense(10, kernel_initializer=init, bias_initializer=init)(
        keras.layers.Flatten()(inputs)
    )
    return keras.Model(inputs, logits)


def _linear_weights(model):
    kernel, bias = model.layers[-1].get_weights()
    return kernel.astype(np.float64), bias.astype(np.float64)  # kernel: [pixels, classes]


@pytest.fixture(scope="module")
def digits():
    arrays = data.load_arrays("digits")
    return (
        data.to_float(arrays.x_train).numpy(),
        arrays.y_train,
        data.to_float(arrays.x_test[:EXAMPLES]).numpy(),
        arrays.y_test[:EXAMPLES],
    )


@pytest.fixture(scope="module")
def mlp(digits):
    """A trained functional MLP whose final Dense layer reads a 16-unit ReLU layer."""
    x_train, y_train, _, _ = digits
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Dense(16, activation="relu", name="hidden")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10, name="logits")(hidden))
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=8, batch_size=128, verbose=0)
    return model


def test_eps_l_of_a_linear_model_is_the_closed_form():
    """Shafahi eq. 4 for z = W x + b: (z_y - z_ybar) / ||W_y - W_ybar||_1, exactly."""
    model = _linear_model()
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (50, 8, 8, 1)).astype(np.float32)
    kernel, bias = _linear_weights(model)
    z = x.reshape(50, -1).astype(np.float64) @ kernel + bias
    y = z.argmax(axis=1)
    y[:10] = (y[:10] + 3) % 10  # some misclassified examples: negative gaps
    others = np.where(np.eye(10, dtype=bool)[y], -np.inf, z)
    runner_up = others.argmax(axis=1)
    idx = np.arange(50)
    gap = z[idx, y] - z[idx, runner_up]
    w_true, w_other = kernel[:, y].T, kernel[:, runner_up].T
    grad_gap = np.abs(w_true - w_other).sum(axis=1)
    cosine = (w_true * w_other).sum(1) / (np.linalg.norm(w_true, axis=1) * np.linalg.norm(w_other, axis=1))

    terms = analysis.eq4_terms(model, x, y, batch_size=16)
    np.testing.assert_array_equal(terms["runner_up"], runner_up)
    np.testing.assert_allclose(terms["logit_gap"], gap, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(terms["gradient_gap"], grad_gap, rtol=1e-5)
    np.testing.assert_allclose(terms["eps_l"], gap / grad_gap, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(terms["cosine"], cosine, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(terms["grad_l1_true"], np.abs(w_true).sum(1), rtol=1e-5)
    assert (terms["eps_l"][:10] < 0).all() and (terms["eps_l"][10:] > 0).all()

    # Eq. 3's step of size just above eps_L flips the runner-up over the true class; just
    # below, it does not (the model is linear, so the linearisation is exact).
    direction = np.sign(w_true - w_other)
    for scale, flips in ((1.001, True), (0.999, False)):
        delta = -scale * terms["eps_l"][10:, None] * direction[10:]
        z_moved = (x.reshape(50, -1)[10:] + delta) @ kernel + bias
        moved_gap = z_moved[idx[:40], y[10:]] - z_moved[idx[:40], runner_up[10:]]
        assert ((moved_gap < 0) == flips).all()

    eps = float(np.median(gap[10:] / grad_gap[10:]))
    result = analysis.linearized_robustness(model, x, y, eps, batch_size=16)
    assert result["predicted_accuracy"] == pytest.approx(np.mean(gap / grad_gap > eps))
    assert result["eps_l"]["median"] == pytest.approx(np.median(gap / grad_gap), rel=1e-4)
    json.dumps(result)


def test_penultimate_sums_equal_a_manual_computation(mlp, digits):
    _, _, images, labels = digits
    hidden = mlp.get_layer("hidden")
    kernel, bias = hidden.get_weights()
    bias[3] = -1e3  # neuron 3 can never fire
    hidden.set_weights([kernel, bias])
    try:
        manual = np.maximum(images.reshape(len(images), -1).astype(np.float64) @ kernel + bias, 0)
        features = analysis.penultimate_model(mlp)
        np.testing.assert_allclose(
            analysis.penultimate_features(features, images, 20), manual, rtol=1e-5, atol=1e-5
        )
        adv = images[::-1].copy()
        result = analysis.penultimate_activations(mlp, images, adv, batch_size=20, attack_name="reversed")
    finally:
        bias[3] = 0.0
        hidden.set_weights([kernel, bias])
    assert result["layer"] == "logits" and result["clean"]["neurons"] == 16
    per_example = manual.sum(axis=1)
    stats = result["clean"]["per_example_sum"]
    assert stats["mean"] == pytest.approx(per_example.mean(), rel=1e-5)
    assert stats["min"] == pytest.approx(per_example.min(), rel=1e-5)
    assert stats["max"] == pytest.approx(per_example.max(), rel=1e-5)
    np.testing.assert_allclose(result["clean"]["per_neuron_abs_sum"], manual.sum(axis=0), rtol=1e-5)
    assert result["clean"]["dead_neurons"] >= 1 and result["clean"]["per_neuron_abs_sum"][3] == 0
    assert result["clean"]["inactive_neurons"] >= result["clean"]["dead_neurons"]
    assert sum(result["adversarial"]["per_example_histogram"]["counts"]) == EXAMPLES


def test_logit_distributions_match_manual_statistics(mlp, digits):
    _, _, images, labels = digits
    threat = Threat(eps=0.1, eps_step=0.02)
    adv, _ = evaluation.adversarial_examples(mlp, images, labels, "pgd10_xent", threat, seed=1)
    result = analysis.logit_distributions(mlp, images, labels, adv, batch_size=20, attack_name="pgd10_xent")
    z = mlp(images, training=False).numpy().astype(np.float64)
    assert result["clean"]["variance"] == pytest.approx(z.var(), rel=1e-5)
    assert result["clean"]["mean_example_variance"] == pytest.approx(z.var(axis=1).mean(), rel=1e-5)
    assert result["clean"]["accuracy"] == pytest.approx(np.mean(z.argmax(1) == labels))
    np.testing.assert_allclose(result["clean"]["sum_abs_per_class"], np.abs(z).sum(0), rtol=1e-5)
    assert result["clean"]["mean_norm"] == pytest.approx(np.sqrt((z**2).sum(1)).mean(), rel=1e-5)
    p01, p99 = np.quantile(z, [0.01, 0.99])
    assert result["clean"]["dynamic_range"] == pytest.approx(p99 - p01, rel=1e-5)
    assert sum(result["clean"]["histogram"]["counts"]) == z.size
    white_box, _ = evaluation.attack_accuracy(
        mlp, images, labels, "pgd10_xent", threat, seed=1, progress=False
    )
    assert result["adversarial"]["accuracy"] == pytest.approx(white_box)
    assert result["adversarial"]["accuracy"] < result["clean"]["accuracy"] - 0.2


def test_bimodality_coefficient_by_hand():
    # Two point masses {-1, 1}: skewness 0, kurtosis 1 -> (0 + 1) / 1 = 1.
    assert analysis.logits.bimodality_coefficient(np.array([[-1.0, 1.0], [1.0, -1.0]])) == pytest.approx(1.0)
    # {0, 0, 0, 4}: mean 1; deviations -1,-1,-1,3: m2 = 3, m3 = 6, m4 = 21;
    # skewness^2 = 36/27 = 4/3, kurtosis = 21/9 = 7/3 -> (4/3 + 1) / (7/3) = 1.
    assert analysis.logits.bimodality_coefficient(np.array([0.0, 0.0, 0.0, 4.0])) == pytest.approx(1.0)
    # {0, 1, 2}: m2 = 2/3, m3 = 0, m4 = 2/3 -> kurtosis 1.5 -> 1 / 1.5 = 2/3.
    assert analysis.logits.bimodality_coefficient(np.array([0.0, 1.0, 2.0, np.inf])) == pytest.approx(2 / 3)
    assert np.isnan(analysis.logits.bimodality_coefficient(np.full(5, 3.0)))


def test_loss_landscape_axes_match_a_manual_walk():
    """For a linear model the FGSM direction of xent is sign(W (softmax(z) - onehot(y)))."""
    model = _linear_model(seed=1)
    kernel, bias = _linear_weights(model)
    rng = np.random.default_rng(1)
    x = rng.uniform(0.3, 0.7, (3, 8, 8, 1)).astype(np.float32)  # the walk stays inside [0, 1]
    y = np.array([0, 4, 7])
    radius, points = 0.2, 5
    result = analysis.loss_landscape(model, x, y, radius, points=points, seed=0)

    def xent(images):
        z = images.reshape(len(images), -1).astype(np.float64) @ kernel + bias
        z = z - z.max(axis=1, keepdims=True)
        return -(z[np.arange(len(z)), y] - np.log(np.exp(z).sum(axis=1)))

    z = x.reshape(3, -1).astype(np.float64) @ kernel + bias
    softmax = np.exp(z - z.max(1, keepdims=True))
    softmax /= softmax.sum(1, keepdims=True)
    sign_grad = np.sign((softmax - np.eye(10)[y]) @ kernel.T).reshape(x.shape)
    grid = np.asarray(result["loss"])
    assert grid.shape == (3, points, points)
    centre = points // 2
    np.testing.assert_allclose(grid[:, centre, centre], xent(x), rtol=1e-5)
    for j, e in enumerate(np.linspace(-radius, radius, points)):
        np.testing.assert_allclose(grid[:, centre, j], xent(x + e * sign_grad), rtol=1e-4)
    # The FGSM direction raises the loss far more than a random one (Shafahi fig. 9).
    assert result["mean_max_loss_adversarial_axis"] > result["mean_max_loss_random_axis"]
    assert (grid[:, centre, -1] > grid[:, centre, centre]).all()


def test_run_analyses_writes_every_json_and_png(mlp, digits, tmp_path):
    _, _, images, labels = digits
    logged = []
    results = analysis.run_analyses(
        mlp,
        images,
        labels,
        str(tmp_path),
        Threat(eps=0.1, eps_step=0.02),
        seed=0,
        landscape_points=11,
        log=logged.append,
    )
    assert set(results) == set(analysis.ANALYSES) and len(logged) == 4
    for name in analysis.ANALYSES:
        with open(tmp_path / f"analysis_{name}.json") as f:
            assert json.load(f) == json.loads(json.dumps(results[name]))
        assert_valid_png(tmp_path / f"analysis_{name}.png")
    assert len(results["landscape"]["images"]) == analysis.LANDSCAPE_IMAGES
    assert results["landscape"]["radius"] == pytest.approx(0.125)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")], "temporary files left"
    with pytest.raises(ValueError, match="unknown analysis"):
        analysis.run_analyses(mlp, images, labels, str(tmp_path), Threat(0.1, 0.02), which=["cka"])


def test_saved_model_skips_activations_with_a_note(mlp, digits, tmp_path):
    _, _, images, labels = digits
    path = str(tmp_path / "saved_model")
    export.export_saved_model(mlp, path)
    loaded = export.load_classifier(path)
    out = tmp_path / "out"
    results = analysis.run_analyses(
        loaded,
        images[:16],
        labels[:16],
        str(out),
        Threat(eps=0.1, eps_step=0.02),
        which=("eps_l", "activations"),
        log=lambda _: None,
    )
    assert "SavedModel" in results["activations"]["skipped"]
    assert not (out / "analysis_activations.png").exists()
    with open(out / "analysis_activations.json") as f:
        assert "skipped" in json.load(f)
    assert_valid_png(out / "analysis_eps_l.png")
    keras_terms = analysis.eq4_terms(mlp, images[:16], labels[:16])
    assert results["eps_l"]["eps_l"]["median"] == pytest.approx(np.median(keras_terms["eps_l"]), rel=1e-4)


def test_run_analyses_takes_the_analysis_config(mlp, digits, tmp_path):
    _, _, images, labels = digits
    config = AnalysisConfig(analyses=("logits",), analysis_attack="fgsm_xent")
    results = analysis.run_analyses(
        mlp,
        images[:16],
        labels[:16],
        str(tmp_path),
        Threat(eps=0.1, eps_step=0.02),
        0,
        config,
        log=lambda _: None,
    )
    assert list(results) == ["logits"] and results["logits"]["attack"] == "fgsm_xent"
