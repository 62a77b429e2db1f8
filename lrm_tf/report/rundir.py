"""The run directory (SPEC 5a): one place for a run's flags, logs, checkpoints, results, export.

All files a person reads are written atomically (write to a temporary file, then rename), so
an interrupted run never leaves half a results.json.
"""

from __future__ import annotations

import json
import os
import tempfile


class RunDir:
    def __init__(self, path: str):
        self.path = os.path.abspath(path)

    def __truediv__(self, name: str) -> str:
        return os.path.join(self.path, name)

    flags_json = property(lambda self: self / "flags.json")
    metrics_csv = property(lambda self: self / "metrics.csv")
    checkpoints = property(lambda self: self / "checkpoints")
    tensorboard = property(lambda self: self / "tensorboard")
    results_json = property(lambda self: self / "results.json")
    results_md = property(lambda self: self / "results.md")
    saved_model = property(lambda self: self / "saved_model")
    keras_file = property(lambda self: self / "model.keras")
    state_json = property(lambda self: self / "run_state.json")

    def exists(self) -> bool:
        return os.path.isdir(self.path)

    def create(self):
        os.makedirs(self.path, exist_ok=True)

    def check_writable(self):
        """Raises OSError early, before any training, if the directory cannot be written."""
        self.create()
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".write_test")
        os.close(fd)
        os.remove(tmp)

    def is_finished(self) -> bool:
        return self.read_json(self.state_json, {}).get("status") == "finished"

    def has_checkpoint(self) -> bool:
        return os.path.isdir(self.checkpoints) and any(
            f.startswith("ckpt") for f in os.listdir(self.checkpoints))

    def set_state(self, status: str, **extra):
        write_json_atomic(self.state_json, {"status": status, **extra})

    @staticmethod
    def read_json(path: str, default=None):
        if not os.path.exists(path):
            return default
        with open(path) as f:
            return json.load(f)


def write_text_atomic(path: str, text: str):
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path))
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def write_json_atomic(path: str, obj):
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def is_run_dir(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "flags.json"))


def is_saved_model(path: str) -> bool:
    return os.path.isfile(os.path.join(path, "saved_model.pb"))
