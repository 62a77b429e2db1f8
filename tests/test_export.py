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


@pytest.mark.parametrize("shape", [[2, 32, 32], [2, 28, 28, 1], [2, 32, 32, 3, 1], [32, 32, 3]])
def test_every_wrong_shape_gets_the_readable_message(trained, shape):
    """A wrong rank too, through the signature and through the callable."""
    _, run, _ = trained
    loaded = tf.saved_model.load(run.saved_model)
    expected = r"images must be float32 \[batch, 32, 32, 3\]"
    with pytest.raises(tf.errors.InvalidArgumentError, match=expected):
        loaded.signatures["serving_default"](images=tf.zeros(shape))
    # The callable declares its shape (gradients keep their rank): TensorFlow refuses a wrong
    # one when binding, naming the expected shape.
    with pytest.raises(TypeError, match=r"TensorSpec\(shape=\(None, 32, 32, 3\)"):
        loaded(tf.zeros(shape))


def test_saved_model_takes_training_like_a_keras_model(trained):
    """ART's TensorFlowV2Classifier calls model(x, training=False): the SavedModel accepts it."""
    net, run, a = trained
    loaded = tf.saved_model.load(run.saved_model)
    x = a.x_test[:4].astype("float32") / 255.0
    expected = net(x, training=False).numpy()
    for kwargs in ({}, {"training": False}, {"training": True}):  # always inference mode
        np.testing.assert_allclose(loaded(x, **kwargs).numpy(), expected, atol=1e-5)


def test_import_lrm_tf_suffices_to_load_every_model_keras_file(tmp_path):
    """The ResNets hold lrm_tf's two custom layers; `import lrm_tf` registers them whether
    Keras is imported before or after it (or by TensorFlow)."""
    for name in ("resnet8", "mnist_cnn"):
        models.build_model(name, (8, 8, 1), 10, seed=0).save(tmp_path / f"{name}.keras")
    for first in (
        "import lrm_tf; import keras",
        "import keras; import lrm_tf",
        "import lrm_tf; import tensorflow; import keras",
    ):
        script = f"{first}\n" + textwrap.dedent(f"""
            import sys
            for name in ("resnet8", "mnist_cnn"):
                keras.saving.load_model({str(tmp_path)!r} + f"/{{name}}.keras", safe_mode=True)
            assert "lrm_tf.models" not in sys.modules  # only the layers were needed
        """)
        env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
        proc = subprocess.run(
            [sys.executable, "-c", script], cwd=str(tmp_path), env=env, capture_output=True, text=True
        )
        assert proc.returncode == 0, f"{first}: {proc.stderr[-1500:]}"
