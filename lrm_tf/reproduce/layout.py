"""A reproduced table laid out as the paper lays it out: one line per row, one column per
published number, each cell "ours / published" (percent), then the columns the paper did not
have but the run measured where they matter for robustness (AutoAttack and its stages,
`worst_case`: robust to every attack run), then each row's status (done, failed with its
error, blocked, not run). Black-box columns are named after their source's method
(`bb <source>/<attack>`). No TensorFlow here.
"""

from __future__ import annotations

import os

from lrm_tf.report.compare import CompareError, run_results
from lrm_tf.report.published import PUBLISHED
from lrm_tf.reproduce.catalogue import BLACKBOX

DASH = "—"
EXTRA = ("autoattack", "worst_case")  # measured columns shown beside the paper's
# How far from finished each status is: a row shows the worst of its runs'.
RANK = {"done": 0, "running": 1, "partial": 2, "missing": 3, "failed": 4, "conflict": 5}


def _percent(entry) -> float | None:
    if isinstance(entry, dict) and entry.get("accuracy") is not None:
        return 100.0 * float(entry["accuracy"])
    return None


def column_name(key: str) -> str:
    """A column's header: the attack name, or `bb <source method>/<attack>` for a black-box one."""
    if key.startswith("blackbox:"):
        _, source, attack = key.split(":")
        from lrm_tf.report.catalogue import short_source

        return f"bb {short_source(source)}/{attack}"
    return key


def table_rows(plan, published: dict | None = None) -> list[dict]:
    """One dict per row of the table (the plan's own jobs with published numbers).

    Args:
      plan: PlannedRuns (`make_plan`), statuses as they are now on disk (a run the runner
        blocked or saw fail has its record in logs/, so it reads failed with its error).
      published: the published rows (default: PUBLISHED).

    Returns:
      Dicts: stem, row (the paper's row name), status, error, cells {column key: {"ours",
      "published"}} in the paper's column order, then the extra measured columns.
    """
    published = PUBLISHED if published is None else published
    by_name = {r.name: r for r in plan}
    rows = []
    for run in plan:
        entry = published.get(run.name)
        if not run.own or entry is None or not entry["results"]:
            continue  # a black-box source has no numbers of its own: its rows show its failure
        try:
            ours = run_results(run.run_dir, entry.get("target")) or {}
        except CompareError as e:
            ours = {}
            run.detail = str(e)
        # A row is as far as the least finished of its runs: its own and its black-box job.
        status, error = "done", ""
        for job_run in filter(None, (run, by_name.get(run.name + BLACKBOX))):
            if RANK[job_run.status] > RANK[status]:
                status = job_run.status
                error = job_run.detail if job_run.status in ("failed", "conflict") else ""
        if status == "missing" and not ours:
            status = "not run"
        cells = {
            key: {"ours": _percent(ours.get(key)), "published": value}
            for key, value in entry["results"].items()
        }
        for key in EXTRA:
            if key in ours and key not in cells:
                cells[key] = {"ours": _percent(ours[key]), "published": None}
        rows.append({"stem": run.name, "row": entry["row"], "status": status, "error": error, "cells": cells})
    return rows


def _cell(cell: dict | None) -> str:
    if cell is None:
        return ""
    ours = DASH if cell["ours"] is None else f"{cell['ours']:.1f}"
    return ours if cell["published"] is None else f"{ours} / {cell['published']:g}"


def table_markdown(table: str, rows: list[dict], scale: float, title: str = "", note: str = "") -> str:
    """The table as Markdown (see the module docstring).

    Args:
      table: the table id.
      rows: the output of `table_rows`.
      scale: the fraction of the papers' training iterations the runs used.
      title: a heading (default: the table id).
      note: a line under the table (e.g. the run time).
    """
    columns: list[str] = []
    for row in rows:
        columns += [k for k in row["cells"] if k not in columns and k not in EXTRA]
    columns += [k for k in EXTRA if any(k in r["cells"] for r in rows)]
    scale_text = (
        "the papers' full training"
        if scale == 1
        else f"{scale:g} of the papers' training iterations (reduced scale)"
    )
    lines = [
        f"# {title or 'Table ' + table}",
        "",
        f"Cells: ours / published (accuracy, %). Runs at {scale_text}.",
        "",
        "| row | " + " | ".join(column_name(c) for c in columns) + " | status |",
        "|---|" + "---:|" * len(columns) + "---|",
    ]
    for row in rows:
        status = row["status"] + (f": {row['error']}" if row["error"] else "")
        cells = [_cell(row["cells"].get(c)) for c in columns]
        lines.append(
            f"| {row['row']} (`{row['stem']}`) | " + " | ".join(cells) + f" | {status.replace('|', '/')} |"
        )
    if note:
        lines += ["", note]
    return "\n".join(lines) + "\n"


def write_table(
    root: str, table: str, rows: list[dict], scale: float, title: str = "", note: str = ""
) -> tuple[str, str]:
    """Writes <root>/reproduce_<table>.json ({"table", "scale", "rows"}) and .md, atomically.

    Returns:
      (json_path, md_path).
    """
    from lrm_tf.report.writer import write_report

    os.makedirs(root, exist_ok=True)
    return write_report(
        root,
        f"reproduce_{table}",
        {"table": table, "scale": scale, "rows": rows, "note": note},
        table_markdown(table, rows, scale, title, note),
    )
