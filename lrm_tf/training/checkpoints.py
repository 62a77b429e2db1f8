"""Checkpoints and metrics.csv, committed together, so that a run killed at any instant
describes one state on disk: its last complete checkpoint (issue 16).

Each save writes, in this order:
  1. `ckpt-N.metrics.json` (the sidecar): the epoch's metric accumulators (so a run resumed
     mid-epoch logs the same epoch means) and every metrics.csv row up to step N;
  2. the checkpoint's files, then the `checkpoint` state file naming ckpt-N: the commit point;
  3. metrics.csv, rewritten whole and atomically from the rows (only when a row was added).
A kill before 2 completes leaves the previous checkpoint as the state, and no row of a later
step is in metrics.csv; a kill between 2 and 3 leaves metrics.csv one row behind, and resuming
rewrites it from the restored checkpoint's sidecar (`CommittedState.__init__`). So metrics.csv
never holds a row whose checkpoint is incomplete, and the rerun logs each epoch once.
Kill points (`lrm_tf.killpoints`): checkpoint_sidecar, checkpoint_files, checkpoint,
metrics_csv.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time

import keras
import numpy as np
import tensorflow as tf

from lrm_tf import killpoints
from lrm_tf.report.rundir import RunDir, write_json_atomic, write_text_atomic

SIDECAR = ".metrics.json"  # beside ckpt-N.index: ckpt-N.metrics.json


class DivergenceError(RuntimeError):
    """Training produced a non-finite loss; the message names the step and the active terms."""


def _cell(value) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)


def csv_text(columns: list[str], rows: list[list[str]]) -> str:
    """metrics.csv's text: the header, then one line per row (csv's \\r\\n line ends)."""
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(columns)
    writer.writerows(rows)
    return out.getvalue()


def _read_csv(path: str) -> tuple[list[str] | None, list[list[str]]]:
    if not os.path.isfile(path):
        return None, []
    with open(path, newline="") as f:
        lines = list(csv.reader(f))
    return (lines[0], lines[1:]) if lines else (None, [])


class CommittedState(keras.callbacks.Callback):
    """Saves checkpoints with their metrics rows, writes metrics.csv, and stops on a
    non-finite loss before that step could be saved (so the last checkpoint is a good one).

    Checkpoints are saved every `every_steps` steps and at the end of each epoch (the epoch's
    row is added first). Constructing it after restoring `latest` reconciles metrics.csv with
    that checkpoint: it then holds exactly the rows of steps up to the restored one.

    Args:
      manager: the tf.train.CheckpointManager of the run (its directory holds the sidecars).
      metrics_csv: the path of metrics.csv.
      steps_per_epoch: steps of a whole epoch.
      total_steps: the run's last step (an epoch end even when not a whole epoch).
      every_steps: checkpoint every this many steps too (0: at epoch ends only).
      latest: the restored checkpoint's path, or None for a fresh start.
      step: the optimizer's step after the restore.
    """

    def __init__(
        self, manager, metrics_csv, steps_per_epoch, total_steps, every_steps=0, latest=None, step=0
    ):
        super().__init__()
        self.manager, self.path, self.every = manager, metrics_csv, every_steps
        self.steps_per_epoch, self.total_steps = steps_per_epoch, total_steps
        sidecar = RunDir.read_json(latest + SIDECAR) if latest else None
        if isinstance(sidecar, dict) and "rows" in sidecar:
            self.columns, self.rows, trackers = sidecar["columns"], sidecar["rows"], sidecar["trackers"]
        else:  # no checkpoint, or one written before the rows were kept beside it
            self.columns, rows = _read_csv(metrics_csv)
            at = self.columns.index("step") if self.columns and "step" in self.columns else None
            self.rows = [r for r in rows if latest and at is not None and int(r[at]) <= step]
            trackers = sidecar
        self.resume_metrics = trackers if step % steps_per_epoch else None
        self._write_csv()

    def _write_csv(self):
        if not self.rows:
            if os.path.exists(self.path):
                os.remove(self.path)
            return
        text = csv_text(self.columns, self.rows)
        if os.path.isfile(self.path):
            with open(self.path, newline="") as f:
                if f.read() == text:
                    return
        write_text_atomic(self.path, text)

    def _step(self) -> int:
        return int(self.model.optimizer.iterations.numpy())

    def save(self):
        """Sidecar, checkpoint (the commit), then metrics.csv; removes stale sidecars."""
        step = self._step()
        trackers = {m.name: [np.asarray(v.numpy()).tolist() for v in m.variables] for m in self.model.metrics}
        sidecar = {"trackers": trackers, "columns": self.columns, "rows": self.rows}
        write_json_atomic(os.path.join(self.manager.directory, f"ckpt-{step}{SIDECAR}"), sidecar)
        killpoints.hit("checkpoint_sidecar")
        # Runs after the data and index files are written, before the state file names them.
        options = tf.train.CheckpointOptions(
            experimental_write_callbacks=[lambda: killpoints.hit("checkpoint_files")]
        )
        self.manager.save(checkpoint_number=step, options=options)
        killpoints.hit("checkpoint")
        if self.rows and self.rows[-1][self.columns.index("step")] == str(step):
            self._write_csv()
            killpoints.hit("metrics_csv")
        kept = {os.path.basename(p) for p in self.manager.checkpoints}
        for name in os.listdir(self.manager.directory):
            stem = name[: -len(SIDECAR)]
            if name.endswith(SIDECAR) and stem not in kept:
                os.remove(os.path.join(self.manager.directory, name))

    def on_epoch_begin(self, epoch, logs=None):
        self._t0 = time.time()
        if self.resume_metrics:
            for m in self.model.metrics:
                for v, value in zip(m.variables, self.resume_metrics.get(m.name, [])):
                    v.assign(np.asarray(value, dtype=v.dtype))
            self.resume_metrics = None

    def on_train_batch_end(self, batch, logs=None):
        step = self._step()
        loss = float((logs or {}).get("loss", 0.0))
        if not math.isfinite(loss):
            terms = ", ".join(f"{k}={float(v):.4g}" for k, v in sorted((logs or {}).items()) if k != "loss")
            raise DivergenceError(
                f"training diverged at step {step}: the loss became {loss}; epoch means of the "
                f"active terms: {terms}. Likely cause: a coefficient or learning rate too large "
                f"for this model. Last good checkpoint: {self.manager.latest_checkpoint or 'none'}"
            )
        epoch_end = step % self.steps_per_epoch == 0 or step >= self.total_steps
        if self.every and step % self.every == 0 and not epoch_end:  # epoch ends save below
            self.save()

    def on_epoch_end(self, epoch, logs=None):
        row = {
            "epoch": epoch + 1,
            "step": self._step(),
            "seconds": round(time.time() - self._t0, 2),
            **(logs or {}),
        }
        if self.columns is None:
            self.columns = list(row)
        self.rows = [*self.rows, [_cell(row.get(c, "")) for c in self.columns]]
        self.save()
