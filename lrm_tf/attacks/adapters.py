"""Model adapters: whatever classifier a caller has, as `images -> logits`.

A Keras model is called with `training=False` (batch norm and dropout in inference mode, so
an attack sees the function it is evaluated against); a loaded SavedModel signature
(keyword-only, dict output) is called with its single input name and its single output; any
other callable is called as it is, and a dict it returns must hold only the logits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping

import keras
import tensorflow as tf

LogitsFn = Callable[[tf.Tensor], tf.Tensor]


def _half_precision_layers(model) -> list:
    """The layers of a Keras model that compute in float16 or bfloat16."""
    layers = [model, *model._flatten_layers(include_self=False)]
    return [layer for layer in layers if layer.compute_dtype in ("float16", "bfloat16")]


@contextlib.contextmanager
def _float32_compute(layers):
    """Layers compute in float32 while traced or run inside (their float32 weights are used
    as they are); their own dtype policies are restored after."""
    saved = [layer.dtype_policy for layer in layers]
    try:
        for layer in layers:
            layer.dtype_policy = "float32"
        yield
    finally:
        for layer, policy in zip(layers, saved):
            layer.dtype_policy = policy


def as_logits_fn(model_fn) -> LogitsFn:
    """Adapts a Keras model, a SavedModel, a SavedModel signature or any callable to
    `images -> logits`.

    Args:
      model_fn: a `keras.layers.Layer` (a model); a loaded SavedModel (called as it is when
        it is callable, else through its 'serving_default' signature, as the SavedModels
        of `keras.Model.export` and of `tf.saved_model.save(keras_model)` need); a SavedModel
        signature (keyword-only, one input, a dict with one output); or a callable images ->
        logits (or a one-entry dict). Images are cast to the dtype a signature or a traced
        function declares (numpy's float64 is the usual case), so any float input works.

    Returns:
      logits_fn(x): x float [B, H, W, C] in the model's input scale ([0, 1] for lrm_tf's
      models) -> logits float [B, classes]. Adapting an adapted function returns it as is.

    Raises:
      TypeError: `model_fn` is neither callable nor a SavedModel with a 'serving_default'
        signature.
      ValueError: (when called) the model returned a dict with more than one output.
    """
    if getattr(model_fn, "_lrm_logits_fn", False):
        return model_fn
    if isinstance(model_fn, keras.layers.Layer) and _half_precision_layers(model_fn):
        layers = _half_precision_layers(model_fn)

        def call(x):
            # Attack gradients in float32 with the same weights: a half-precision backward
            # pass rounds a confident example's input gradient to zero or flips the signs
            # of its small components (fault 3 of issue 12); the model itself, and the
            # accuracy measured on its answers, keep the model's precision.
            with _float32_compute(layers):
                return tf.cast(model_fn(x, training=False), tf.float32)
    elif isinstance(model_fn, keras.layers.Layer):

        def call(x):
            return model_fn(x, training=False)
    elif not callable(model_fn):
        signature = (getattr(model_fn, "signatures", None) or {}).get("serving_default")
        if signature is None:
            raise TypeError(
                f"model_fn must be a Keras model, a SavedModel (callable or with a "
                f"'serving_default' signature), a signature or a callable; got "
                f"{type(model_fn).__name__}"
            )
        return as_logits_fn(signature)
    elif _keyword_only_signature_name(model_fn) is not None:
        input_name = _keyword_only_signature_name(model_fn)
        dtype = _declared_dtype(model_fn.structured_input_signature[1][input_name])

        def call(x):
            return _single_output(model_fn(**{input_name: _cast(x, dtype)}))
    else:
        dtype = _traced_input_dtype(model_fn)

        def call(x):
            return _single_output(model_fn(_cast(x, dtype)))

    call._lrm_logits_fn = True
    return call


def _declared_dtype(spec):
    dtype = getattr(spec, "dtype", None)
    return dtype if isinstance(dtype, tf.dtypes.DType) and dtype.is_floating else None


def _traced_input_dtype(fn):
    """The float dtype of the images (first) input a tf.function (or a loaded SavedModel's
    `__call__`) declares in its input_signature, else None."""
    # A loaded SavedModel's `__call__` attribute is the traced function carrying the signature.
    for candidate in (fn, getattr(fn, "__call__", None)):  # noqa: B004
        signature = getattr(candidate, "input_signature", None)
        if signature:
            return _declared_dtype(signature[0])
    return None


def _cast(x, dtype):
    if dtype is None:
        return x
    x = tf.convert_to_tensor(x)
    return x if x.dtype == dtype else tf.cast(x, dtype)


def _keyword_only_signature_name(fn):
    """The input name of a loaded SavedModel signature (these take keyword arguments only)."""
    signature = getattr(fn, "structured_input_signature", None)
    if signature is None:
        return None
    args, kwargs = signature
    if not args and len(kwargs) == 1:
        return next(iter(kwargs))
    return None


def _single_output(outputs):
    if isinstance(outputs, Mapping):
        if len(outputs) != 1:
            raise ValueError(
                f"model_fn returned {len(outputs)} outputs {sorted(outputs)}; "
                "the attacks need a callable that returns only the logits"
            )
        return next(iter(outputs.values()))
    return outputs
