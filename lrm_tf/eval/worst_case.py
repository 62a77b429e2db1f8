"""Per-example results: the worst case over every attack run, and the arrays beside results.json.

A defense's accuracy under each attack separately overstates its robustness: the critics of
logit pairing and squeezing (Engstrom et al. 2018, Mosbach et al. 2018) and AutoAttack
(Croce & Hein 2020, arXiv:2003.01690, section 4) count a point as robust only if every
attack failed on it. The `worst_case` row is that per-example AND over all the attacks of an
evaluation (including 'clean': a misclassified point is broken from the start).

Files, beside results.json:
  * results_per_example.npz: one bool array [n] per attack (True: still correctly
    classified under that attack) and 'worst_case'; each row of results.json names its array
    (`'per_example': {'file': 'results_per_example.npz', 'key': name}`).
  * adversarial_<attack>.npz (with `save_adversarial`): 'x_adv' float32 [n, H, W, C],
    'labels' int64 [n], 'correct' bool [n].
"""

from __future__ import annotations

import os

import numpy as np

from lrm_tf.report.rundir import _create_temporary, check_local_path

WORST_CASE = "worst_case"
PER_EXAMPLE_FILE = "results_per_example.npz"


class EvalResults(dict):
    """`evaluate_attacks`' rows ({name: JSON-able row}), with the per-example correctness of
    each row in `per_example` ({name: bool [n]}), written beside results.json."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.per_example: dict[str, np.ndarray] = {}


def worst_case_row(per_example: dict[str, np.ndarray]) -> tuple[dict, np.ndarray]:
    """The worst case over attacks: a point is robust only if it is under every attack.

    Attacks that evaluate a prefix of the test set (SPSA) bound the row to that prefix.

    Args:
      per_example: {attack: bool [n_attack]}, True where the point was still correct.

    Returns:
      (row {'accuracy', 'examples', 'params': {'family': 'worst_case', 'attacks': [...]},
      'per_example'}, bool [n] with n the smallest n_attack).

    Raises:
      ValueError: no attack.
    """
    if not per_example:
        raise ValueError("the worst case needs at least one attack")
    n = min(len(v) for v in per_example.values())
    robust = np.ones([n], bool)
    for correct in per_example.values():
        robust &= np.asarray(correct[:n], bool)
    row = {
        "accuracy": float(robust.mean()) if n else 0.0,
        "examples": n,
        "params": {"family": WORST_CASE, "attacks": list(per_example)},
        "per_example": per_example_ref(WORST_CASE),
    }
    return row, robust


def per_example_ref(name: str) -> dict:
    """Where a row's per-example array is: {'file': results_per_example.npz, 'key': name}."""
    return {"file": PER_EXAMPLE_FILE, "key": name}


def _save_npz(path: str, arrays: dict[str, np.ndarray]) -> str:
    """np.savez to `path` atomically (a temporary file beside it renamed over it), with the
    umask's permissions like every file of a run (`lrm_tf.report.rundir`)."""
    check_local_path(path)
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = _create_temporary(folder, "." + os.path.basename(path))
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    return path


def write_per_example(out_dir: str, per_example: dict[str, np.ndarray]) -> str:
    """Writes results_per_example.npz: one bool [n] array per attack name (and worst_case).

    Returns:
      The path.
    """
    arrays = {name: np.asarray(v, bool) for name, v in per_example.items()}
    return _save_npz(os.path.join(out_dir, PER_EXAMPLE_FILE), arrays)


def adversarial_path(out_dir: str, attack: str) -> str:
    """<out_dir>/adversarial_<attack>.npz."""
    return os.path.join(out_dir, f"adversarial_{attack}.npz")


def write_adversarial(out_dir: str, attack: str, x_adv, labels, correct) -> str:
    """Writes adversarial_<attack>.npz: 'x_adv' float32 [n, ...] in [0, 1], 'labels' int64
    [n], 'correct' bool [n] (the model's prediction on x_adv is the label).

    Returns:
      The path.
    """
    arrays = {
        "x_adv": np.asarray(x_adv, np.float32),
        "labels": np.asarray(labels, np.int64),
        "correct": np.asarray(correct, bool),
    }
    return _save_npz(adversarial_path(out_dir, attack), arrays)


def read_per_example(out_dir: str) -> dict[str, np.ndarray]:
    """results_per_example.npz of a run directory as {name: bool [n]} ({} when absent)."""
    path = os.path.join(out_dir, PER_EXAMPLE_FILE)
    if not os.path.exists(path):
        return {}
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def markdown_notes(results: dict[str, dict]) -> list[str]:
    """Lines under the results table: the ensembles' stages and warnings, and how to read
    the worst_case row."""
    lines = []
    for name, row in results.items():
        if row.get("stages"):
            stages = " -> ".join(f"{s['attack']} {100 * s['robust_accuracy']:.2f}%" for s in row["stages"])
            lines += ["", f"{name} robust accuracy after each stage: {stages}."]
        for warning in row.get("warnings", []):
            lines += ["", f"**Warning ({name}):** {warning}."]
    if WORST_CASE in results:
        attacks = ", ".join(results[WORST_CASE]["params"]["attacks"])
        lines += [
            "",
            f"{WORST_CASE}: the points correctly classified under every attack ({attacks}); "
            f"per-example arrays in {PER_EXAMPLE_FILE}.",
        ]
    return lines
