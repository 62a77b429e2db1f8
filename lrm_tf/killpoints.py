"""Deterministic kill points for crash tests (issue 16): the process kills itself at a named
point of a run, so a test can stop it exactly where a preemption could, without timing.

Set `LRM_TF_KILL_AT=<point>[:<n>]` in the environment: the n-th time (default 1) the process
reaches `<point>` it sends itself SIGKILL (nothing is flushed or cleaned up, as in a real kill).
Unset, `hit` does nothing. The points, in the order a training run reaches them, are `POINTS`.
"""

from __future__ import annotations

import os
import signal

ENV = "LRM_TF_KILL_AT"

POINTS = {
    "started": "flags.json and run_state.json ('training') written, training not begun",
    "checkpoint_sidecar": "ckpt-N.metrics.json (metric state and the metrics rows up to step N) "
    "written; the checkpoint's files not yet (at an epoch end: the epoch's row is on disk, its "
    "checkpoint is not)",
    "checkpoint_files": "the middle of a checkpoint: ckpt-N's data and index written, the "
    "'checkpoint' state file does not name it yet",
    "checkpoint": "checkpoint N committed (the state file names it); metrics.csv not rewritten yet",
    "metrics_csv": "metrics.csv rewritten with the rows up to the committed checkpoint",
    "export_saved_model": "the new SavedModel complete in saved_model.tmp, the old one in place",
    "export_swap": "the old saved_model/ moved aside, the new one not yet renamed into place",
    "export_keras": "the new model.keras written to a temporary file, not renamed yet",
    "evaluation": "the model exported and evaluated, no result written yet",
    "report": "a report's .json written, its .md not yet (results.json before results.md)",
    "finishing": "results and provenance written; run_state.json still says 'training'",
    "reproduce_row": "--mode=reproduce: a row's child process ended and its outcome is recorded "
    "(logs/<name>.json); the next rows not started",
}

_hits: dict[str, int] = {}


def parse(spec: str) -> tuple[str, int]:
    """(point, n) of a `LRM_TF_KILL_AT` value '<point>[:<n>]'.

    Raises:
      ValueError: an unknown point or an n that is not a positive integer.
    """
    name, _, count = spec.partition(":")
    if name not in POINTS:
        raise ValueError(f"{ENV}={spec}: unknown kill point {name!r}; known: {', '.join(POINTS)}")
    if count and not (count.isdigit() and int(count) >= 1):
        raise ValueError(f"{ENV}={spec}: the count after ':' must be a positive integer")
    return name, int(count or 1)


def hit(point: str) -> None:
    """Marks that the process reached `point`; SIGKILLs the process on the chosen hit.

    Args:
      point: a key of `POINTS`.

    Raises:
      ValueError: `point` is not a kill point, or `LRM_TF_KILL_AT` is malformed.
    """
    if point not in POINTS:
        raise ValueError(f"unknown kill point {point!r}")
    spec = os.environ.get(ENV)
    if not spec:
        return
    name, n = parse(spec)
    if name != point:
        return
    _hits[point] = _hits.get(point, 0) + 1
    if _hits[point] == n:
        os.kill(os.getpid(), getattr(signal, "SIGKILL", signal.SIGTERM))
