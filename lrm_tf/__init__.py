"""lrm_tf: logit-regularization defenses and CleverHans-style evaluation in Keras 3.

Importing the package sets no environment variable and no Keras or TensorFlow state, and does
not import TensorFlow (the command line, `python -m lrm_tf.main`, sets what it needs). It does
one thing so that `import lrm_tf` is all a user needs before `keras.saving.load_model` on any
exported `model.keras`: once Keras is imported (now, or later by the user), lrm_tf's two custom
layers (`lrm_tf.layers.PerImageStandardization`, `ZeroPadChannels`) are registered with Keras.
Keras only imports the modules of its own packages when it deserializes, so without this the
ResNets' files would load only after an explicit `import lrm_tf.layers`.
"""

import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"


def _register_keras_layers() -> None:
    import lrm_tf.layers  # noqa: F401  (its decorators register the layers; it needs only Keras)


class _Loader(importlib.abc.Loader):
    """Keras' own loader, then the registration; every other attribute is Keras' loader's."""

    def __init__(self, inner):
        self._inner = inner

    def create_module(self, spec):
        return self._inner.create_module(spec)

    def exec_module(self, module):
        self._inner.exec_module(module)
        _uninstall()
        _register_keras_layers()

    def __getattr__(self, name):
        return getattr(self._inner, name)


class _AfterKeras(importlib.abc.MetaPathFinder):
    """Finds nothing itself: it wraps the spec Python's own finders return for `keras`, so the
    registration runs right after Keras is imported; it leaves once Keras has been imported
    (TensorFlow looks Keras up with `find_spec` before importing it)."""

    def __init__(self):
        self._busy = False

    def find_spec(self, name, path=None, target=None):
        if name != "keras" or self._busy:
            return None
        self._busy = True
        try:
            spec = importlib.util.find_spec(name)
        finally:
            self._busy = False
        if spec is not None and spec.loader is not None:
            spec.loader = _Loader(spec.loader)
        return spec


def _uninstall():
    sys.meta_path[:] = [f for f in sys.meta_path if not isinstance(f, _AfterKeras)]


if "keras" in sys.modules:
    _register_keras_layers()
elif not any(isinstance(f, _AfterKeras) for f in sys.meta_path):
    sys.meta_path.insert(0, _AfterKeras())
