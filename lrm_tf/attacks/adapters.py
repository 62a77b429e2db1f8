"""Model adapters: whatever classifier a caller has, as `images -> logits`.

A Keras model is called with `training=False` (batch norm and dropout in inference mode, so
an attack sees the function it is evaluated against); a loaded SavedModel signature
(keyword-only, dict output) is called with its single input name and its single output; any
other callable is called as it is, and a dict it returns must hold only the logits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import keras
import tensorflow as tf

LogitsFn = Callable[[tf.Tensor], tf.Tensor]


def as_logits_fn(model_fn) -> LogitsFn:
    """Adapts a Keras model, a SavedModel signature or any callable to `images -> logits`.

    Args:
      model_fn: a `keras.layers.Layer` (a model), a SavedModel signature (keyword-only, one
        input, a dict with one output), or a callable images -> logits (or a one-entry dict).

    Returns:
      logits_fn(x): x float [B, H, W, C] in the model's input scale ([0, 1] for lrm_tf's
      models) -> logits float [B, classes]. Adapting an adapted function returns it as is.

    Raises:
      ValueError: (when called) the model returned a dict with more than one output.
    """
    if getattr(model_fn, "_lrm_logits_fn", False):
        return model_fn
    if isinstance(model_fn, keras.layers.Layer):

        def call(x):
            return model_fn(x, training=False)
    elif _keyword_only_signature_name(model_fn) is not None:
        input_name = _keyword_only_signature_name(model_fn)

        def call(x):
            return _single_output(model_fn(**{input_name: x}))
    else:

        def call(x):
            return _single_output(model_fn(x))

    call._lrm_logits_fn = True
    return call


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
