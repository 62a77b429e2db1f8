"""Black-box transfer matrices (LRM tables 2 and 4): shape, white-box diagonal, tables and files."""

import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from lrm_tf import data
from lrm_tf.config import SpsaOptions, Threat
from lrm_tf.eval import evaluation, transfer

THREAT = Threat(eps=0.1, eps_step=0.02)
ATTACK = "pgd10_xent"
EXAMPLES = 96


def _train_mlp(x, y, seed):
    """An 8x8 digits classifier: 16 units, a few epochs (about 95% clean accuracy)."""
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((8, 8, 1))
    hidden = keras.layers.Dense(16, activation="relu")(keras.layers.Flatten()(inputs))
    model = keras.Model(inputs, keras.layers.Dense(10)(hidden))
    model.compile(keras.optimizers.Adam(0.01), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=8, batch_size=128, verbose=0)
    return model


@pytest.fixture(scope="module")
def setup():
    arrays = data.load_arrays("digits")
    x_train = data.to_float(arrays.x_train).numpy()
    models = {"a": _train_mlp(x_train, arrays.y_train, 0), "b": _train_mlp(x_train, arrays.y_train, 1)}
    images = data.to_float(arrays.x_test[:EXAMPLES]).numpy()
    return models, images, arrays.y_test[:EXAMPLES]


def test_matrix_shape_and_white_box_diagonal(setup):
    models, images, labels = setup
    keras.utils.set_random_seed(5)
    untrained = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(), keras.layers.Dense(10)])
    targets = {**models, "untrained": untrained}
    matrix = transfer.transfer_matrix(models, targets, images, labels, ATTACK, THREAT, batch_size=40, seed=3)
    assert matrix["sources"] == ["a", "b"] and matrix["targets"] == ["a", "b", "untrained"]
    assert set(matrix["accuracy"]) == {"a", "b"}
    assert all(set(row) == {"a", "b", "untrained"} for row in matrix["accuracy"].values())
    assert matrix["white_box"] == [["a", "a"], ["b", "b"]]
    assert matrix["examples"] == EXAMPLES
    json.dumps(matrix)  # JSON-able as it is
    for name, model in models.items():
        white_box, _ = evaluation.attack_accuracy(
            model, images, labels, ATTACK, THREAT, batch_size=40, seed=3, progress=False
        )
        clean, _ = evaluation.attack_accuracy(model, images, labels, "clean", THREAT, progress=False)
        assert matrix["accuracy"][name][name] == white_box
        assert clean - white_box > 0.2, "the attack must have done something"
        other = "b" if name == "a" else "a"
        # Transfer to an independently trained model is weaker than the white-box attack.
        assert matrix["accuracy"][name][other] > white_box


def test_off_diagonal_cell_is_target_accuracy_on_source_examples(setup):
    models, images, labels = setup
    x_adv, y = evaluation.adversarial_examples(
        models["a"], images, labels, ATTACK, THREAT, batch_size=40, seed=3
    )
    assert x_adv.shape == images.shape and x_adv.dtype == np.float32
    assert np.abs(x_adv - images).max() <= THREAT.eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    assert np.abs(x_adv - images).max() > THREAT.eps / 2
    matrix = transfer.transfer_matrix(
        {"a": models["a"]}, {"b": models["b"]}, images, labels, ATTACK, THREAT, batch_size=40, seed=3
    )
    predictions = np.argmax(models["b"](x_adv, training=False), axis=1)
    assert matrix["accuracy"]["a"]["b"] == pytest.approx(np.mean(predictions == y), abs=1e-12)
    assert matrix["white_box"] == []


def test_spsa_source_attacks_only_the_first_spsa_examples(setup):
    models, images, labels = setup
    threat = Threat(eps=0.1, eps_step=0.02)
    spsa = SpsaOptions(spsa_samples=8, spsa_examples=12)
    x_adv, y = evaluation.adversarial_examples(
        models["a"], images, labels, "spsa2", threat, batch_size=40, spsa=spsa
    )
    assert len(x_adv) == len(y) == 12
    np.testing.assert_array_equal(y, labels[:12])
    matrix = transfer.transfer_matrix(
        {"a": models["a"]}, {"a": models["a"]}, images, labels, "spsa2", threat, batch_size=40, spsa=spsa
    )
    assert matrix["examples"] == 12
    white_box, n = evaluation.attack_accuracy(
        models["a"], images, labels, "spsa2", threat, batch_size=40, progress=False, spsa=spsa
    )
    assert n == 12 and matrix["accuracy"]["a"]["a"] == white_box


def test_markdown_table_and_files(tmp_path):
    matrix = {
        "attack": ATTACK,
        "sources": ["regular", "lrm"],
        "targets": ["regular", "lrm"],
        "accuracy": {"regular": {"regular": 0.268, "lrm": 0.673}, "lrm": {"regular": 0.715, "lrm": 0.543}},
        "examples": 1000,
        "white_box": [["regular", "regular"], ["lrm", "lrm"]],
        "threat": {"eps": 0.03, "eps_step": 0.0078},
        "seed": 0,
        "seconds": {},
    }
    text = transfer.transfer_markdown(matrix)
    lines = text.splitlines()
    header = lines.index("| source \\ target | regular | lrm |")
    assert lines[header + 1] == "|---|---:|---:|"
    assert lines[header + 2] == "| regular | 26.80%* | 67.30% |"
    assert lines[header + 3] == "| lrm | 71.50% | 54.30%* |"
    assert "1000 test examples" in text and "white-box" in text
    json_path, md_path = transfer.write_transfer(str(tmp_path), matrix)
    assert os.path.basename(json_path) == "transfer.json"
    with open(json_path) as f:
        assert json.load(f) == matrix
    with open(md_path) as f:
        assert f.read() == text
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")], "temporary files left"


def test_mirrored_strategy_gives_the_single_device_examples(tmp_path):
    """Two logical CPUs (configured before TensorFlow starts, hence a fresh process) and an
    odd batch: gathered replica results come back in the batch order of one device."""
    script = textwrap.dedent("""
        import json, numpy as np, tensorflow as tf, keras
        tf.config.set_logical_device_configuration(
            tf.config.list_physical_devices("CPU")[0], [tf.config.LogicalDeviceConfiguration()] * 2)
        from lrm_tf.config import Threat
        from lrm_tf.eval.evaluation import adversarial_examples
        strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
        keras.utils.set_random_seed(0)
        with strategy.scope():
            model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Flatten(),
                                      keras.layers.Dense(16, activation="tanh"),
                                      keras.layers.Dense(10)])
        rng = np.random.default_rng(0)
        x = rng.uniform(0, 1, (13, 8, 8, 1)).astype(np.float32)
        y = rng.integers(0, 10, 13)
        threat = Threat(eps=0.1, eps_step=0.03)
        one, _ = adversarial_examples(model, x, y, "pgd5_xent", threat, 7, seed=2)
        two, _ = adversarial_examples(model, x, y, "pgd5_xent", threat, 7, seed=2,
                                      strategy=strategy)
        print(json.dumps({"replicas": strategy.num_replicas_in_sync, "shape": list(two.shape),
                          "diff": float(np.abs(one - two).max()),
                          "moved": float(np.abs(one - x).max())}))
    """)
    proc = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["replicas"] == 2 and report["shape"] == [13, 8, 8, 1]
    assert report["moved"] > 0.05
    assert report["diff"] <= 1e-5
