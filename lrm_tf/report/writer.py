"""The one report writer: `<name>.json` (the data) and `<name>.md` (the table a person reads).

Evaluation (results), curves, the audit, transfer matrices, the analyses and the comparison
with published numbers all write through `write_report`, atomically (`rundir`'s writers), so
an interrupted run never leaves half a report.
"""

from __future__ import annotations

import os
from typing import Any

from lrm_tf.report.rundir import write_json_atomic, write_text_atomic


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
    if markdown is None:
        return json_path, None
    md_path = os.path.join(out_dir, f"{name}.md")
    write_text_atomic(md_path, markdown)
    return json_path, md_path
