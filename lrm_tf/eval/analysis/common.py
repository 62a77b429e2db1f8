"""Helpers shared by the analyses: batched model calls (which report their progress) and
JSON-able statistics/histograms."""

from __future__ import annotations

import contextlib
import contextvars

import numpy as np
import tensorflow as tf

HISTOGRAM_BINS = 60

# Set by `counting`: called with the examples of each batch `batched` has run.
_ADVANCE = contextvars.ContextVar("analysis_progress", default=None)


@contextlib.contextmanager
def counting(report, total: int):
    """Within the block, every `batched` call reports the examples it ran to `report`.

    Args:
      report: report(fraction, note) (`lrm_tf.report.progress`).
      total: the examples the block's `batched` calls run in all (fraction = run / total).
    """
    done = 0

    def advance(examples: int) -> None:
        nonlocal done
        done += examples
        report(min(done / max(total, 1), 1.0), f"{done}/{total} model inputs")

    token = _ADVANCE.set(advance)
    try:
        yield
    finally:
        _ADVANCE.reset(token)


def batched(fn, batch_size: int, *arrays) -> tuple:
    """Applies `fn` batch by batch.

    Args:
      fn: tensors -> a tensor or a tuple of tensors, each with a leading batch axis.
      batch_size: examples per call.
      *arrays: numpy arrays of the same length N, cut into batches.

    Returns:
      A tuple of numpy arrays: each output of `fn`, concatenated over the batches. Inside
      `counting`, the examples of each batch are reported.
    """
    outputs = None
    advance = _ADVANCE.get()
    for start in range(0, len(arrays[0]), batch_size):
        out = fn(*(tf.convert_to_tensor(a[start : start + batch_size]) for a in arrays))
        out = out if isinstance(out, (tuple, list)) else (out,)
        outputs = outputs or [[] for _ in out]
        for acc, o in zip(outputs, out):
            acc.append(np.asarray(o))
        if advance is not None:
            advance(len(outputs[0][-1]))
    return tuple(np.concatenate(o) for o in outputs)


def summary_stats(values: np.ndarray) -> dict:
    """Summary statistics of the finite values (JSON-able)."""
    values = np.asarray(values, np.float64).ravel()
    finite = values[np.isfinite(values)]
    if not len(finite):
        return {"count": int(len(values)), "finite": 0}
    q = np.quantile(finite, [0.01, 0.25, 0.5, 0.75, 0.99])
    return {
        "count": int(len(values)),
        "finite": int(len(finite)),
        "mean": float(finite.mean()),
        "variance": float(finite.var()),
        "std": float(finite.std()),
        "min": float(finite.min()),
        "max": float(finite.max()),
        "p01": float(q[0]),
        "p25": float(q[1]),
        "median": float(q[2]),
        "p75": float(q[3]),
        "p99": float(q[4]),
    }


def histogram(values: np.ndarray, edges: np.ndarray) -> dict:
    """Counts of the finite values in the bins of `edges` (JSON-able edges and counts)."""
    counts, _ = np.histogram(np.asarray(values)[np.isfinite(values)], bins=edges)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def shared_edges(*arrays, bins: int = HISTOGRAM_BINS, quantiles=(0.0, 1.0)) -> np.ndarray:
    """`bins` + 1 equal-width edges spanning the `quantiles` of the finite values of all
    `arrays`, so that their histograms share bins (a unit range when there is none)."""
    values = np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])
    values = values[np.isfinite(values)]
    if not len(values):
        return np.linspace(0.0, 1.0, bins + 1)
    lo, hi = np.quantile(values, quantiles)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1)
