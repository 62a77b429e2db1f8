"""The run's TensorBoard logs: one event file per writer folder, appended by every process.

Layout (`tensorboard --logdir <run>/tensorboard`):

* `tensorboard/`: the run's settings through the HParams plugin (flags.json's values),
  written once when the file is created.
* `tensorboard/train/`: one point per epoch of every column of metrics.csv (loss, each
  objective term, accuracy, lr, seconds) at step = the epoch, 1..N, as metrics.csv counts.
* `tensorboard/eval/`: `accuracy/<attack>` for every row of results.json (clean, each attack,
  worst_case) and the figures (analyses, curves) as images, at the step of the model they
  measured: the last epoch of metrics.csv (0 for a model without one).

TensorFlow's own writers open a new file per process (and Keras' callback one per `fit`
call), so a resumed run scattered its curves over many files. These files are written with
TensorBoard's record format and protos (`tensorboard.summary.writer.record_writer`, the
scalar, image and HParams plugins' summaries), appended to by each process; a record cut short
by a crash is dropped before appending. No TensorFlow is imported.
"""

from __future__ import annotations

import csv
import json
import math
import os
import struct
import time
from collections.abc import Mapping

FILE_NAME = "events.out.tfevents.lrm_tf"  # "tfevents" in the name: TensorBoard reads it
TRAIN, EVAL = "train", "eval"


def _intact_length(path: str) -> int:
    """Bytes of `path` that hold whole records (a crash may leave a partial one at the end)."""
    from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import masked_crc32c

    size, offset = os.path.getsize(path), 0
    with open(path, "rb") as f:
        while offset + 12 <= size:
            header = f.read(12)
            (length,) = struct.unpack("<Q", header[:8])
            end = offset + 12 + length + 4
            if struct.unpack("<I", header[8:])[0] != masked_crc32c(header[:8]) or end > size:
                break
            if end == size:  # the last record: check its data too
                data, (crc,) = f.read(length), struct.unpack("<I", f.read(4))
                return end if masked_crc32c(data) == crc else offset
            f.seek(end)
            offset = end
    return offset


def append(logdir: str, summaries: list, step: int) -> str:
    """Appends summaries at `step` to the event file of `logdir` (created if missing).

    Args:
      logdir: a writer's folder, e.g. `<run>/tensorboard/train`.
      summaries: `summary_pb2.Summary` protos.
      step: their step.

    Returns:
      The event file's path.

    Raises:
      OSError: the folder cannot be written.
    """
    from tensorboard.compat.proto import event_pb2
    from tensorboard.summary.writer.record_writer import RecordWriter

    os.makedirs(logdir, exist_ok=True)
    path = os.path.join(logdir, FILE_NAME)
    new = not os.path.exists(path)
    if not new:
        intact = _intact_length(path)
        if intact < os.path.getsize(path):
            os.truncate(path, intact)
    now = time.time()
    with open(path, "ab") as f:
        writer = RecordWriter(f)
        if new:
            writer.write(event_pb2.Event(wall_time=now, file_version="brain.Event:2").SerializeToString())
        for summary in summaries:
            writer.write(event_pb2.Event(wall_time=now, step=int(step), summary=summary).SerializeToString())
        f.flush()
    return path


def _scalar(tag: str, value: float, description: str | None = None):
    from tensorboard.plugins.scalar.summary_v2 import scalar_pb

    return scalar_pb(tag, float(value), description=description)


def write_scalars(logdir: str, step: int, values: Mapping[str, float], descriptions=None) -> str:
    """Appends finite numbers {tag: value} at `step` (others, e.g. text, are skipped).

    Returns:
      The event file's path.
    """
    descriptions = descriptions or {}
    summaries = [
        _scalar(tag, v, descriptions.get(tag))
        for tag, v in values.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    ]
    return append(logdir, summaries, step)


def write_image(logdir: str, tag: str, png_path: str, step: int, description: str = "") -> str:
    """Appends a PNG file as an image summary (the image plugin's tensor form: width,
    height, encoded PNG) at `step`.

    Returns:
      The event file's path.
    """
    import numpy as np
    from tensorboard.compat.proto import summary_pb2
    from tensorboard.plugins.image import metadata
    from tensorboard.util import tensor_util

    with open(png_path, "rb") as f:
        png = f.read()
    width, height = struct.unpack(">II", png[16:24])  # the IHDR chunk
    tensor = tensor_util.make_tensor_proto(np.array([str(width).encode(), str(height).encode(), png], object))
    summary = summary_pb2.Summary()
    summary.value.add(tag=tag, metadata=metadata.create_summary_metadata(tag, description), tensor=tensor)
    return append(logdir, [summary], step)


def hparams_values(settings: Mapping) -> dict:
    """Settings as HParams values: numbers, booleans and text; lists as comma-separated text;
    None as ''; keys starting with '_' (flags.json's bookkeeping) left out."""
    out = {}
    for name, value in sorted(settings.items()):
        if name.startswith("_"):
            continue
        if isinstance(value, (list, tuple)):
            value = ",".join(map(str, value))
        if value is None:
            value = ""
        out[name] = value if isinstance(value, (bool, int, float, str)) else str(value)
    return out


def write_hparams(tensorboard_dir: str, settings: Mapping, start_time: float | None = None) -> str | None:
    """Writes the run's settings once, through the HParams plugin, in `tensorboard_dir`.

    Args:
      tensorboard_dir: the run's `tensorboard/` folder (the session; train/ and eval/ hold
        its metrics).
      settings: {name: value}, e.g. flags.json's content.
      start_time: the session's start (seconds since the epoch; default now).

    Returns:
      The event file's path, or None when it already held the settings (a resumed run).
    """
    from tensorboard.plugins.hparams.summary_v2 import hparams_pb

    if os.path.exists(os.path.join(tensorboard_dir, FILE_NAME)):
        return None
    return append(tensorboard_dir, [hparams_pb(hparams_values(settings), start_time_secs=start_time)], 0)


def run_settings(run_path: str) -> dict | None:
    """flags.json of a run directory, or None when there is none."""
    path = os.path.join(run_path, "flags.json")
    if not os.path.isfile(path):
        return None
    with open(path) as f:
        return json.load(f)


def model_step(run_path: str) -> int:
    """The step at which results of the run's model are logged: the last epoch in
    metrics.csv (0 when the directory has none, e.g. a loaded SavedModel's results)."""
    path = os.path.join(run_path, "metrics.csv")
    if not os.path.isfile(path):
        return 0
    with open(path, newline="") as f:
        epochs = [int(row["epoch"]) for row in csv.DictReader(f) if row.get("epoch", "").isdigit()]
    return max(epochs, default=0)


def write_results(run_path: str, results: Mapping[str, Mapping]) -> str:
    """Appends `accuracy/<attack>` (a fraction in [0, 1]) for every row of results.json,
    worst_case included, to `tensorboard/eval` at the run's `model_step`.

    Args:
      run_path: the directory results.json is written to.
      results: {attack: {'accuracy', 'examples', 'params'}} (`lrm_tf.eval.evaluate_attacks`).

    Returns:
      The event file's path.
    """
    values, descriptions = {}, {}
    for name, row in results.items():
        values[f"accuracy/{name}"] = row["accuracy"]
        params = ", ".join(f"{k}={v}" for k, v in sorted(row.get("params", {}).items()))
        descriptions[f"accuracy/{name}"] = f"{name} on {row.get('examples')} examples ({params})"
    logdir = os.path.join(run_path, "tensorboard", EVAL)
    return write_scalars(logdir, model_step(run_path), values, descriptions)


def write_figure(out_dir: str, name: str, png_path: str, description: str = "") -> str:
    """Appends the figure `png_path` as the image `name` to `<out_dir>/tensorboard/eval` at
    the run's `model_step`.

    Returns:
      The event file's path.
    """
    logdir = os.path.join(out_dir, "tensorboard", EVAL)
    return write_image(logdir, name, png_path, model_step(out_dir), description)


def command(run_path: str) -> str:
    """The command that shows the run in TensorBoard."""
    return f"tensorboard --logdir {os.path.join(run_path, 'tensorboard')}"
