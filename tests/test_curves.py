"""Sanity and strength curves (Shafahi et al. tables 9-11): eps, steps and restarts sweeps and
their plots."""

import json
import os

import keras
import matplotlib.image
import pytest

from lrm_tf import data
from lrm_tf.config import CurvesConfig, Threat
from lrm_tf.eval import curves, evaluation

EXAMPLES = 80


@pytest.fixture(scope="module")
def setup():
    """An 8x8 digits MLP trained a few epochs (about 95% clean accuracy)."""
    arrays = data.load_arrays("digits")
    keras.utils.set_random_seed(0)
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10)(hidden))
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(data.to_float(arrays.x_train).numpy(), arrays.y_train, epochs=8, batch_size=128, verbose=0)
    return model, data.to_float(arrays.x_test[:EXAMPLES]).numpy(), arrays.y_test[:EXAMPLES]


def assert_valid_png(path, min_bytes=10_000):
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    assert os.path.getsize(path) > min_bytes, f"{path} is suspiciously small"
    pixels = matplotlib.image.imread(path)
    assert pixels.shape[0] > 300 and pixels.shape[1] > 400
    assert pixels[..., :3].std() > 0.05, f"{path} is (nearly) blank"


def test_eps_sweep_falls_to_zero_at_unbounded_eps(setup):
    model, images, labels = setup
    eps_values = [0.02, 0.05, 0.1, 0.2, 1.0]
    curve = curves.eps_sweep(model, images, labels, eps_values, steps=20, seed=1)
    accuracy = [p["accuracy"] for p in curve["points"]]
    clean, _ = evaluation.attack_accuracy(model, images, labels, "clean", Threat(0.1, 0.01), progress=False)
    assert clean > 0.85 and accuracy[0] > 0.5
    # Monotone up to a sampling wobble of two examples: a larger ball contains the smaller.
    assert all(b <= a + 2 / EXAMPLES for a, b in zip(accuracy, accuracy[1:])), accuracy
    # L-inf eps = 1 on [0, 1] images reaches every image: a working attack leaves nothing.
    assert accuracy[-1] == 0.0
    assert [p["x"] for p in curve["points"]] == eps_values
    for p in curve["points"]:
        assert p["eps_step"] == pytest.approx(2.5 * p["eps"] / 20)
        assert p["attack"] == "pgd20_xent" and p["examples"] == EXAMPLES
    assert curve["eps_step_rule"].startswith("eps_step = 2.5 * eps / steps")
    json.dumps(curve)


def test_steps_sweep_points_are_attack_accuracy_calls(setup):
    model, images, labels = setup
    curve = curves.steps_sweep(
        model, images, labels, [1, 5, 20], Threat(eps=0.08, eps_step=0.02), attack_loss="cw", seed=4
    )
    assert [p["attack"] for p in curve["points"]] == ["pgd1_cw", "pgd5_cw", "pgd20_cw"]
    for p in curve["points"]:
        expected, _ = evaluation.attack_accuracy(
            model, images, labels, p["attack"], Threat(eps=0.08, eps_step=0.02), seed=4, progress=False
        )
        assert p["accuracy"] == expected
    accuracy = [p["accuracy"] for p in curve["points"]]
    # One step of 0.02 cannot use a 0.08 ball; twenty steps can.
    assert accuracy[-1] < accuracy[0] - 0.1, accuracy


def test_restarts_sweep_never_increases(setup):
    """Restart r has the same seed whatever the total, so more restarts only add chances."""
    model, images, labels = setup
    curve = curves.restarts_sweep(
        model, images, labels, [1, 2, 4, 6], Threat(eps=0.07, eps_step=0.02), steps=5, seed=2
    )
    accuracy = [p["accuracy"] for p in curve["points"]]
    assert all(b <= a for a, b in zip(accuracy, accuracy[1:])), accuracy
    assert [p["restarts"] for p in curve["points"]] == [1, 2, 4, 6]
    single, _ = evaluation.attack_accuracy(
        model, images, labels, "pgd5_xent", Threat(eps=0.07, eps_step=0.02), seed=2, progress=False
    )
    assert accuracy[0] == single
    assert 0.0 < accuracy[0] < 1.0, "the sweep must sit where restarts can matter"


def test_run_curves_writes_json_and_readable_png(setup, tmp_path):
    model, images, labels = setup
    threat = Threat(eps=0.08, eps_step=0.02)
    logged = []
    result = curves.run_curves(
        model,
        images[:40],
        labels[:40],
        str(tmp_path),
        ["eps", "steps", "restarts"],
        threat,
        steps=5,
        eps_values=[0.05, 1.0],
        steps_values=[2, 10],
        restarts_values=[1, 3],
        log=logged.append,
    )
    assert set(result) == {"eps", "steps", "restarts"} and len(logged) == 3
    for kind in ("eps", "steps", "restarts"):
        with open(tmp_path / f"curve_{kind}.json") as f:
            assert json.load(f) == result[kind]
        assert_valid_png(tmp_path / f"curve_{kind}.png")
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")], "temporary files left"
    with pytest.raises(ValueError, match="unknown curve"):
        curves.run_curves(model, images, labels, str(tmp_path), ["epochs"], threat)


def test_default_eps_values_end_at_the_unbounded_eps():
    # From the clean point (eps 0) through fractions and multiples of the threat's eps to 1.
    assert curves.default_eps_values(8 / 255) == tuple(
        round(8 / 255 * m, 6) for m in (0, 0.25, 0.5, 1, 2, 4, 8, 16)
    ) + (1.0,)
    assert curves.default_eps_values(0.3) == (0.0, 0.075, 0.15, 0.3, 0.6, 1.0)


def test_eps_zero_point_is_the_clean_accuracy(setup):
    """A ball of radius 0 holds only x: the eps-0 point is the clean accuracy, recorded as
    the sweep's PGD point."""
    model, images, labels = setup
    curve = curves.eps_sweep(model, images, labels, [0.0], steps=3)
    clean, _ = evaluation.attack_accuracy(model, images, labels, "clean", Threat(0.1, 0.01), progress=False)
    point = curve["points"][0]
    assert point["accuracy"] == clean and point["attack"] == "pgd3_xent"
    assert point["eps"] == 0.0 and point["eps_step"] == 0.0 and point["x"] == 0.0


def test_run_curves_takes_the_curves_config(setup, tmp_path):
    model, images, labels = setup
    config = CurvesConfig(curves=("restarts",), curve_loss="cw", curve_steps=2)
    result = curves.run_curves(
        model,
        images[:10],
        labels[:10],
        str(tmp_path),
        config,
        Threat(eps=0.08, eps_step=0.02),
        restarts_values=[1, 2],
        log=lambda _: None,
    )
    assert list(result) == ["restarts"] and result["restarts"]["attack"] == "pgd2_cw"
    assert (tmp_path / "curve_restarts.json").exists()
