import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from lrm_tf import data, export, models, training
from lrm_tf.config import Objective
from lrm_tf.report.rundir import RunDir


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A resnet8 (batch norm inside, so inference mode matters) trained a few steps."""
    a = data.synthetic_arrays("cifar10", 64, 16, seed=1)
    run = RunDir(str(tmp_path_factory.mktemp("run")))
    cfg = training.TrainConfig(batch_size=32, train_steps=3, lr_values=(0.05,), lr_boundaries=(), verbose=0)
    net = training.train(
        lambda: models.build_model("resnet8", (32, 32, 3), 10, seed=0), Objective(), a, run, cfg
    )
    export.export_saved_model(net, run.saved_model)
    export.save_keras(net, run.keras_file)
    return net, run, a


def test_saved_model_loads_with_plain_tensorflow(trained, tmp_path):
    net, run, a = trained
    x = a.x_test.astype("float32") / 255.0
    np.save(tmp_path / "x.npy", x)
    expected = net(x, training=False).numpy()
    script = textwrap.dedent(f"""
        import sys, numpy as np, tensorflow as tf
        m = tf.saved_model.load({run.saved_model!r})
        x = np.load({str(tmp_path / "x.npy")!r})
        a = m.signatures["serving_default"](images=tf.constant(x))["logits"].numpy()
        b = m(tf.constant(x)).numpy()
        assert not any(k.startswith("lrm_tf") for k in sys.modules), "lrm_tf was imported"
        np.save({str(tmp_path / "out.npy")!r}, np.stack([a, b]))
    """)
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    subprocess.run([sys.executable, "-c", script], check=True, cwd=str(tmp_path), env=env)
    out = np.load(tmp_path / "out.npy")
    np.testing.assert_allclose(out[0], expected, atol=1e-5)
    np.testing.assert_allclose(out[1], expected, atol=1e-5)


def test_keras_file_loads_in_safe_mode(trained):
    net, run, a = trained
    x = a.x_test[:4].astype("float32") / 255.0
    loaded = export.load_keras(run.keras_file)
    np.testing.assert_allclose(loaded(x, training=False), net(x, training=False), atol=1e-5)


def test_signature_rejects_wrong_shape_and_dtype(trained):
    _, run, _ = trained
    sig = tf.saved_model.load(run.saved_model).signatures["serving_default"]
    with pytest.raises(tf.errors.InvalidArgumentError, match=r"images must be float32 \[batch, 32, 32, 3\]"):
        sig(images=tf.zeros([2, 28, 28, 1]))
    with pytest.raises((ValueError, TypeError, tf.errors.InvalidArgumentError)):
        sig(images=tf.zeros([2, 32, 32, 3], tf.uint8))
