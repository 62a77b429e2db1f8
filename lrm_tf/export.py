"""Export and loading: a SavedModel anyone can attack, and the native `.keras` file.

Serving signature `serving_default`: input `images`, float32 [batch, H, W, C] in [0, 1];
output `logits`, float32 [batch, classes]. Batch norm runs in inference mode. Loading needs
only TensorFlow: `tf.saved_model.load(path).signatures['serving_default'](images=x)['logits']`,
or call the loaded object directly: `tf.saved_model.load(path)(x)` (differentiable, for attacks;
it also takes `training=`, ignored, so tools written for Keras models use it as it is).
"""

from __future__ import annotations

import os
import shutil

import keras
import tensorflow as tf

from lrm_tf import killpoints
from lrm_tf.report.rundir import is_run_dir, is_saved_model

# How far outside [0, 1] the served model still answers (see `_Serving._logits`).
SERVED_MARGIN = 0.5


class _Serving(tf.Module):
    """What the SavedModel holds: `__call__(images, training=False)` and the signature.

    `training` is accepted so that callers written for Keras models (ART's
    `TensorFlowV2Classifier` calls `model(x, training=False)`) use the SavedModel unchanged;
    it is ignored: the exported model always runs batch norm in inference mode.
    """

    def __init__(self, net: keras.Model, input_shape):
        super().__init__()
        self.net = net
        self.input_shape = list(input_shape)
        # The callable declares its shape: gradients through it keep a known rank (attacks and
        # other tools need it), and TensorFlow refuses a wrong shape when binding, naming the
        # expected one. The signature binds any shape, so that a wrong one reaches the readable
        # check below instead of being constant-folded away (signature inputs are not checked).
        images = tf.TensorSpec([None, *input_shape], tf.float32, name="images")
        training = tf.TensorSpec([], tf.bool, name="training")
        self.__call__ = tf.function(self._call, input_signature=[images, training])
        any_shape = tf.TensorSpec(None, tf.float32, name="images")
        self.serve = tf.function(self._serve, input_signature=[any_shape])

    def _call(self, images, training=False):
        del training  # always inference mode (see the class docstring)
        return self._logits(images)

    def _logits(self, images):
        # One readable message for every wrong shape, a wrong rank included.
        rank = len(self.input_shape) + 1
        expected = tf.constant(self.input_shape, tf.int32)
        padded = tf.concat([tf.shape(images), tf.fill([rank], -1)], axis=0)[1:rank]
        ok = tf.logical_and(tf.equal(tf.rank(images), rank), tf.reduce_all(tf.equal(padded, expected)))
        message = f"images must be float32 [batch, {', '.join(map(str, self.input_shape))}] in [0, 1]"
        images = _checked(images, ok, [message, "got shape", tf.shape(images)])
        # Static shape for the model. Not tf.ensure_shape: its shape function would fail while
        # the graph is specialised to the input, before the check above could speak.
        images = tf.reshape(images, [-1, *self.input_shape])
        # The wrong scale (0-255 floats) is refused, not served. Values just outside [0, 1] are
        # served: attacks probe there (SPSA's finite differences at x +- delta, CleverHans'
        # unclipped steps), and other tools' attacks must get the model's answer.
        margin = SERVED_MARGIN
        in_range = tf.logical_and(tf.reduce_all(images >= -margin), tf.reduce_all(images <= 1.0 + margin))
        images = _checked(images, in_range, ["images must be float32 in [0, 1] (0-255: divide by 255)"])
        return self.net(images, training=False)

    def _serve(self, images):
        return {"logits": self._logits(images)}


def _checked(images, ok, message):
    """`images`, after an in-graph check that fails with `message` when `ok` is false.

    A branch, not a control dependency: in a tf.function nothing orders a control-dependent
    Assert before the ops that consume `images`, so the model could fail first with its own
    error."""

    def fail():
        tf.debugging.Assert(False, message)
        return tf.identity(images)

    return tf.cond(ok, lambda: tf.identity(images), fail)


def export_saved_model(net: keras.Model, path: str):
    """Writes a SavedModel with a fixed-shape float32 signature (wrong shapes/dtypes are rejected).

    Crash-consistent: the new export is written to `<path>.tmp`, the old one is moved aside to
    `<path>.old` and the new one renamed into place, so a kill leaves the previous complete
    export or none (then `<path>.old` holds it, and the next export puts it back before
    starting), never a partial one.

    Args:
      net: the classifier, images [B, H, W, C] float32 in [0, 1] -> logits [B, classes].
      path: the SavedModel folder; replaced only once the new export is complete.
    """
    input_shape = tuple(net.input_shape[1:])
    module = _Serving(net, input_shape)
    path = path.rstrip("/")
    tmp, old = path + ".tmp", path + ".old"
    if not os.path.exists(path) and is_saved_model(old):  # a kill between the two renames
        os.replace(old, path)
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.rmtree(old, ignore_errors=True)
    tf.saved_model.save(module, tmp, signatures={"serving_default": module.serve})
    killpoints.hit("export_saved_model")
    if os.path.exists(path):
        os.replace(path, old)
    killpoints.hit("export_swap")
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def save_keras(net: keras.Model, path: str):
    """Writes `net` as a native `.keras` file at `path`, atomically (temporary file, rename)."""
    tmp = path + ".tmp.keras"
    net.save(tmp)
    killpoints.hit("export_keras")
    os.replace(tmp, path)


def load_keras(path: str) -> keras.Model:
    """Loads a `.keras` file in safe mode (no arbitrary code from Lambda layers)."""
    import lrm_tf.models  # noqa: F401  registers the custom layers

    return keras.saving.load_model(path, safe_mode=True, compile=False)


def load_classifier(path: str, mixed_precision: str | None = None):
    """A callable images -> logits from a run directory (model.keras) or a SavedModel folder.

    A run directory loads its `.keras` file (a Keras model with batch norm available);
    a SavedModel loads with `tf.saved_model.load` - only load SavedModels you trust, since
    loading executes the graph they contain.

    Args:
      path: a run directory or a SavedModel folder.
      mixed_precision: None (compute as saved), or 'none' (float32), 'mixed_float16' or
        'mixed_bfloat16' for the layers of a `.keras` model (`lrm_tf.models.with_precision`).

    Raises:
      ValueError: `path` is neither; or a precision is asked of a SavedModel, whose graph
        computes in the precision it was exported in.
    """
    if is_run_dir(path):
        keras_file = os.path.join(path, "model.keras")
        if os.path.exists(keras_file):
            model = load_keras(keras_file)
            if mixed_precision is None:
                return model
            from lrm_tf.models import with_precision

            return with_precision(model, mixed_precision)
        path = os.path.join(path, "saved_model")
    if is_saved_model(path):
        if mixed_precision is not None:
            raise ValueError(
                f"--mixed_precision={mixed_precision}: {path} is a SavedModel, which computes in the "
                "precision it was exported in; leave --mixed_precision out"
            )
        return tf.saved_model.load(path)
    raise ValueError(f"--load_from={path} is neither a run directory (with flags.json) nor a SavedModel")
