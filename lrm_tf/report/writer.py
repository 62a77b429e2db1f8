"""The one report writer: `<name>.json` (the data) and `<name>.md` (the table a person reads).

Evaluation (results), curves, the audit, transfer matrices, the analyses and the comparison
with published numbers all write through `write_report`, atomically (`rundir`'s writers), so
an interrupted run never leaves half a report. Beside them, `write_provenance` records what
is needed to reproduce them: the resolved settings, the seed, the versions and the date.
"""

from __future__ import annotations

import datetime
import importlib.metadata
import os
import platform
import sys
from typing import Any

from lrm_tf import killpoints
from lrm_tf.report.index import write_index
from lrm_tf.report.rundir import RunDir, write_json_atomic, write_text_atomic

PROVENANCE = "provenance"  # the file stem: provenance.json, one record per mode


def write_report(out_dir: str, name: str, data: Any, markdown: str | None = None) -> tuple[str, str | None]:
    """Writes `<out_dir>/<name>.json` and, when given, `<out_dir>/<name>.md`, atomically.

    Args:
      out_dir: the directory (created if missing).
      name: the file stem, e.g. 'results', 'audit', 'transfer_pgd7_xent'.
      data: a JSON-able object, written with sorted keys and an indent of 2.
      markdown: the Markdown text, or None for a report that is JSON only (a curve, whose
        picture is its PNG).

    Returns:
      (json_path, md_path); md_path is None when `markdown` is None.

    Raises:
      TypeError: `data` is not JSON-able (the previous file, if any, is left intact).
      OSError: the directory cannot be written.
    """
    json_path = os.path.join(out_dir, f"{name}.json")
    write_json_atomic(json_path, data)
    killpoints.hit("report")
    if markdown is None:
        return json_path, None
    md_path = os.path.join(out_dir, f"{name}.md")
    write_text_atomic(md_path, markdown)
    return json_path, md_path


def _version(package: str) -> str | None:
    module = sys.modules.get(package)
    if getattr(module, "__version__", None):
        return module.__version__
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def provenance(flags: dict, seed: int, **extra) -> dict:
    """A record of how results were made: enough to run the same command again.

    Args:
      flags: the resolved settings ({flag: value}, as flags.json holds them).
      seed: the seed of initialisation, data order and attacks.
      **extra: other JSON-able entries (e.g. the mode, the evaluated model, the threat).

    Returns:
      {**extra, 'flags', 'seed', 'versions' (lrm_tf, tensorflow, keras, numpy, python),
      'date' (UTC, ISO 8601), 'command' (sys.argv)}.
    """
    import lrm_tf

    return {
        **extra,
        "flags": flags,
        "seed": seed,
        "versions": {
            "lrm_tf": lrm_tf.__version__,
            "tensorflow": _version("tensorflow"),
            "keras": _version("keras"),
            "numpy": _version("numpy"),
            "python": platform.python_version(),
        },
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": list(sys.argv),
    }


def write_provenance(out_dir: str, mode: str, record: dict) -> str:
    """Adds `record` (from `provenance`) under `mode` to `<out_dir>/provenance.json`.

    The records of other modes written to the same directory (training, then evaluation,
    then an audit) are kept; the same mode's earlier record is replaced, as its results are.
    The directory's README.md is then written again (`lrm_tf.report.index`): every mode ends
    here, so the index lists what the mode added.

    Args:
      out_dir: the directory the mode wrote its results to.
      mode: the mode's name, e.g. 'eval'.
      record: the provenance record.

    Returns:
      The path of provenance.json.

    Raises:
      OSError: the directory cannot be written.
    """
    path = os.path.join(out_dir, f"{PROVENANCE}.json")
    records = RunDir.read_json(path, {})
    records = records if isinstance(records, dict) else {}
    records[mode] = record
    write_json_atomic(path, records)
    write_index(out_dir)
    return path
