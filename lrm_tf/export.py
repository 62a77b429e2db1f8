"""Export and loading: a SavedModel anyone can attack, and the native `.keras` file.

Serving signature `serving_default`: input `images`, float32 [batch, H, W, C] in [0, 1];
output `logits`, float32 [batch, classes]. Batch norm runs in inference mode. Loading needs
only TensorFlow: `tf.saved_model.load(path).signatures['serving_default'](images=x)['logits']`,
or call the loaded object directly: `tf.saved_model.load(path)(x)` (differentiable, for attacks).
"""

from __future__ import annotations

import os
import shutil

import keras
import tensorflow as tf

from lrm_tf.report.rundir import is_run_dir, is_saved_model


class _Serving(tf.Module):
    def __init__(self, net: keras.Model, input_shape):
        super().__init__()
        self.net = net
        self.input_shape = list(input_shape)
        spec = tf.TensorSpec([None, *input_shape], tf.float32, name="images")
        self.__call__ = tf.function(self._logits, input_signature=[spec])
        self.serve = tf.function(self._serve, input_signature=[spec])

    def _logits(self, images):
        # Signature calls skip the TensorSpec shape check, so check here with a readable message.
        expected = tf.constant(self.input_shape, tf.int32)
        tf.debugging.assert_equal(
            tf.shape(images)[1:],
            expected,
            message=f"images must be float32 [batch, {', '.join(map(str, self.input_shape))}] in [0, 1]",
        )
        return self.net(images, training=False)

    def _serve(self, images):
        return {"logits": self._logits(images)}


def export_saved_model(net: keras.Model, path: str):
    """Writes a SavedModel with a fixed-shape float32 signature (wrong shapes/dtypes are rejected).

    Args:
      net: the classifier, images [B, H, W, C] float32 in [0, 1] -> logits [B, classes].
      path: the SavedModel folder; replaced only once the new export is complete.
    """
    input_shape = tuple(net.input_shape[1:])
    module = _Serving(net, input_shape)
    tmp = path.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve})
    # Replace the old export only once the new one is complete.
    shutil.rmtree(path, ignore_errors=True)
    os.replace(tmp, path)


def save_keras(net: keras.Model, path: str):
    """Writes `net` as a native `.keras` file at `path`, atomically (temporary file, rename)."""
    tmp = path + ".tmp.keras"
    net.save(tmp)
    os.replace(tmp, path)


def load_keras(path: str) -> keras.Model:
    """Loads a `.keras` file in safe mode (no arbitrary code from Lambda layers)."""
    import lrm_tf.models  # noqa: F401  registers the custom layers

    return keras.saving.load_model(path, safe_mode=True, compile=False)


def load_classifier(path: str):
    """A callable images -> logits from a run directory (model.keras) or a SavedModel folder.

    A run directory loads its `.keras` file (a Keras model with batch norm available);
    a SavedModel loads with `tf.saved_model.load` - only load SavedModels you trust, since
    loading executes the graph they contain.
    """
    if is_run_dir(path):
        keras_file = os.path.join(path, "model.keras")
        if os.path.exists(keras_file):
            return load_keras(keras_file)
        path = os.path.join(path, "saved_model")
    if is_saved_model(path):
        loaded = tf.saved_model.load(path)
        return loaded
    raise ValueError(f"--load_from={path} is neither a run directory (with flags.json) nor a SavedModel")
