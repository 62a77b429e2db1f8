"""The published numbers of every flagfile in flags/, loaded from `published.json` beside this file.

PUBLISHED maps a flagfile stem (flags/<stem>.cfg, whose --model_dir is runs/<stem>) to
{"paper", "table", "row", "dataset", "results": {attack name: accuracy in percent}} and, where
the paper gives it, "train_accuracy" (percent, not compared). White-box columns use the attack
names of the flagfile's --eval_attacks ("clean" is the clean test accuracy). Black-box columns
are keyed "blackbox:<source>:<attack>", the source being the flagfile stem of the model the
examples were made on (or a name in EXTERNAL_SOURCES for models only the paper has); rows of
a black-box table (--mode=transfer flagfiles) also name their "target" model's flagfile.

The data file is the one source: each entry there also holds the "notes" of its flagfile's
header (how the paper was read, the decisions taken where it gives no value). The flagfile
headers and the index of flags/README.md are generated from it by
`python -m lrm_tf.report.catalogue --write`, and tests/test_flagfiles.py fails when they are
stale, when a flagfile has no entry or an entry no flagfile. Nothing here imports TensorFlow.
"""

from __future__ import annotations

import json
import os
from importlib import resources

DATA_FILE = "published.json"


def _load() -> dict:
    text = resources.files("lrm_tf.report").joinpath(DATA_FILE).read_text(encoding="utf-8")
    return json.loads(text)


_DATA = _load()

# Paper key -> {"short", "title", "file"} (the file name of the paper's text).
PAPERS: dict[str, dict] = _DATA["papers"]
# Black-box sources that no flagfile here reproduces: name -> what the paper used.
EXTERNAL_SOURCES: dict[str, str] = _DATA["external_sources"]
# Flagfiles with no published row of their own (general-purpose starting points): stem -> summary.
UNPUBLISHED: dict[str, str] = {stem: e["summary"] for stem, e in _DATA["unpublished"].items()}
# Flagfile stem -> its published row (the data file's entry without its header notes).
PUBLISHED: dict[str, dict] = {
    stem: {k: v for k, v in e.items() if k != "notes"} for stem, e in _DATA["published"].items()
}
# Flagfile stem -> the hand-written lines of its header comment (without "# ").
NOTES: dict[str, list[str]] = {
    stem: list(e.get("notes", []))
    for section in ("published", "unpublished")
    for stem, e in _DATA[section].items()
}


def get(stem: str) -> dict:
    """The published row of one flagfile.

    Args:
        stem: a flagfile stem, e.g. "lrm_t1_cifar10_lrm".

    Returns:
        The entry of PUBLISHED (paper, table, row, dataset, results in percent, ...).

    Raises:
        KeyError: `stem` has no published row (it may be in UNPUBLISHED).
    """
    try:
        return PUBLISHED[stem]
    except KeyError:
        raise KeyError(f"{stem!r} has no published row in lrm_tf/report/{DATA_FILE}") from None


def entry_for(name: str) -> tuple[str, dict] | None:
    """The published row a flagfile path or stem, or a run directory name, refers to.

    The exact stem wins; otherwise the longest stem that `name` starts with, followed by '_',
    '-' or '.' (runs/lrm_t1_cifar10_lrm_seed2 -> lrm_t1_cifar10_lrm).

    Args:
        name: a flagfile path or stem ("flags/x.cfg", "x") or a run directory ("runs/x_seed2").

    Returns:
        (stem, entry of PUBLISHED), or None when nothing matches.
    """
    base = os.path.basename(os.path.normpath(name))
    if base.endswith(".cfg"):
        base = base[:-4]
    if base in PUBLISHED:
        return base, PUBLISHED[base]
    best = None
    for stem in PUBLISHED:
        if base.startswith(stem) and base[len(stem)] in "_-." and (best is None or len(stem) > len(best)):
            best = stem
    return (best, PUBLISHED[best]) if best else None
