"""The run directory: one place for a run's flags, logs, checkpoints, results and export.

All files a person reads are written atomically (write to a temporary file, then rename), so
an interrupted run never leaves half a results.json; they are created with the permissions the
umask gives, like every other file of the run.

Run directories are local folders: Keras' logs, `shutil` and `os.replace` do not reach cloud
storage, so a URL (`gs://bucket/run`) is refused (`check_local_path`) instead of becoming a
local folder named `gs:`. Write locally and copy the run afterwards (`gsutil cp -r`).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import tempfile

_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")


def check_local_path(path: str, what: str = "path") -> None:
    """Refuses a URL (gs://, s3://, hdfs://, ...) where a local folder is needed.

    Args:
      path: the path to check.
      what: how to name it in the error (e.g. '--model_dir').

    Raises:
      ValueError: `path` is a URL; one line naming `what`.
    """
    if _URL.match(str(path)):
        raise ValueError(
            f"{what}={path}: cloud and URL paths are not supported for run directories; "
            "use a local folder (copy the run afterwards, e.g. gsutil cp -r)"
        )


class RunDir:
    """A run's directory and the names of the files in it.

    Files: flags.json (the resolved settings), metrics.csv (per-epoch metrics), checkpoints/,
    tensorboard/, results.json and results.md (evaluation), saved_model/ and model.keras
    (export), run_state.json (training / finished, read by resume).

    Args:
      path: the directory (made absolute; it need not exist yet).

    Raises:
      ValueError: `path` is a URL such as gs://bucket/run (`check_local_path`).
    """

    def __init__(self, path: str):
        check_local_path(path, "run directory")
        self.path = os.path.abspath(path)

    def __truediv__(self, name: str) -> str:
        """`run / 'name'`: the path of a file in the run directory."""
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
        """Whether the directory exists."""
        return os.path.isdir(self.path)

    def create(self):
        """Makes the directory (and its parents) if missing."""
        os.makedirs(self.path, exist_ok=True)

    def check_writable(self):
        """Raises OSError early, before any training, if the directory cannot be written."""
        self.create()
        fd, tmp = tempfile.mkstemp(dir=self.path, prefix=".write_test")
        os.close(fd)
        os.remove(tmp)

    def is_finished(self) -> bool:
        """Whether run_state.json says the run finished."""
        return self.read_json(self.state_json, {}).get("status") == "finished"

    def has_checkpoint(self) -> bool:
        """Whether checkpoints/ holds a complete checkpoint to resume from: its state file
        (`checkpoint`, written once a checkpoint's files are complete) exists."""
        return os.path.isfile(os.path.join(self.checkpoints, "checkpoint"))

    def remove(self):
        """Deletes the directory: first renamed aside (one atomic step), then removed, so a kill
        leaves the run whole or gone, never part of it (e.g. checkpoints without run_state.json).
        A kill while removing leaves a hidden `.<name>.removing.<hex>` folder beside it."""
        if not self.exists():
            return
        parent, name = os.path.split(self.path)
        aside = os.path.join(parent, f".{name}.removing.{secrets.token_hex(4)}")
        os.replace(self.path, aside)
        shutil.rmtree(aside)

    def set_state(self, status: str, **extra):
        """Writes run_state.json atomically: {"status": status, **extra}.

        Args:
          status: 'training', 'finished', 'diverged', 'not_learning', or 'failed' /
            'interrupted' (an unexpected error or Ctrl-C; `lrm_tf.cli.app`).
          **extra: JSON-able entries (e.g. train_seconds).
        """
        write_json_atomic(self.state_json, {"status": status, **extra})

    @staticmethod
    def read_json(path: str, default=None):
        """The JSON content of `path`, or `default` when the file does not exist."""
        if not os.path.exists(path):
            return default
        with open(path) as f:
            return json.load(f)


def write_text_atomic(path: str, text: str):
    """Writes `text` to `path` atomically: a temporary file beside it, fsync, then rename.

    Args:
      path: the file; its directory is created if missing.
      text: the content.

    Raises:
      OSError: the directory cannot be written; the previous file, if any, is left intact
        and no temporary file remains (also when interrupted).
    """
    check_local_path(path)
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = _create_temporary(directory, "." + os.path.basename(path))
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


def _create_temporary(directory: str, prefix: str) -> tuple[int, str]:
    """A new file beside the target, opened for writing, with the umask's permissions (0666
    less the umask; `tempfile.mkstemp` would give 0600, which survives the rename)."""
    while True:
        tmp = os.path.join(directory, f"{prefix}.{secrets.token_hex(6)}.tmp")
        try:
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), tmp
        except FileExistsError:
            continue


def write_json_atomic(path: str, obj):
    """Writes `obj` as JSON (indent 2, sorted keys) to `path` atomically.

    Raises:
      TypeError: `obj` is not JSON-able (the previous file is left intact).
    """
    write_text_atomic(path, json.dumps(obj, indent=2, sort_keys=True) + "\n")


def is_run_dir(path: str) -> bool:
    """Whether `path` is a run directory (it holds flags.json)."""
    return os.path.isfile(os.path.join(path, "flags.json"))


def is_saved_model(path: str) -> bool:
    """Whether `path` is a SavedModel directory (it holds saved_model.pb)."""
    return os.path.isfile(os.path.join(path, "saved_model.pb"))
