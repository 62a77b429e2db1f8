"""Our numbers next to the papers': one row per (run, attack) with ours, published and delta.

A run directory is matched to its published row (lrm_tf.report.published) by, in order: the
flagfiles its flags.json says its values came from (`_sources`: "flagfile: PATH"), the basename
of the recorded --model_dir, the basename of the directory itself. A name
matches a flagfile stem exactly or, failing that, by its longest stem prefix followed by
'_', '-' or '.', so `runs/lrm_t1_cifar10_lrm_seed2` is compared with `lrm_t1_cifar10_lrm`.

Ours comes from results.json (white-box: `{attack: {"accuracy": fraction, "examples": n}}`)
and, for black-box columns `blackbox:<source>:<attack>`, from the transfer matrices that
--mode=transfer writes (transfer.json, transfer_<attack>.json: accuracy[source][target]); the
target is the entry's "target" or the matrix's only target. Accuracies are fractions there; the
comparison is in percent, delta in points (ours - published). Nothing here imports TensorFlow.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterable

from lrm_tf.report.published import PAPERS, PUBLISHED, entry_for
from lrm_tf.report.writer import write_report

DASH = "—"
NO_RESULTS = "no results yet"


class CompareError(ValueError):
    """A run directory that cannot be compared (missing, or unreadable files)."""


def _read_json(path: str):
    if not os.path.isfile(path):
        return None
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise CompareError(f"{path}: cannot read it as JSON ({e})") from None


def _candidates(run_dir: str, flags: dict) -> list[str]:
    # The flagfiles the run's flags came from (flags.json's "_sources": "flagfile: PATH"), the
    # row's own file naming model_dir, dataset and mode before its base recipes.
    sources = flags.get("_sources") or {}
    tag = "flagfile: "
    files = [v[len(tag) :] for v in sources.values() if isinstance(v, str) and v.startswith(tag)]
    names = list(dict.fromkeys(files))
    if flags.get("model_dir"):
        names.append(str(flags["model_dir"]))
    names.append(run_dir)
    return names


def match_run(run_dir: str, flags: dict | None = None) -> str | None:
    """The flagfile stem whose published row a run directory reproduces.

    Args:
        run_dir: the run directory.
        flags: its flags.json, if read (the flagfiles of "_sources" and "model_dir" are
            tried before the directory's own name).

    Returns:
        The stem (a key of PUBLISHED), or None when no published row matches.
    """
    for name in _candidates(run_dir, flags or {}):
        found = entry_for(name)
        if found:
            return found[0]
    return None


def _percent(value) -> float | None:
    return None if value is None else round(100.0 * float(value), 4)


def _transfer_results(run_dir: str, target: str | None) -> dict:
    """{blackbox:<source>:<attack>: {"accuracy", "examples"}} from the run's transfer matrices."""
    out = {}
    for path in sorted(glob.glob(os.path.join(run_dir, "transfer*.json"))):
        matrix = _read_json(path)
        if not isinstance(matrix, dict) or "accuracy" not in matrix:
            continue
        targets = matrix.get("targets", [])
        names = {os.path.basename(os.path.normpath(t)): t for t in targets}
        if target in names:
            column = names[target]
        elif len(targets) == 1:
            column = targets[0]
        else:
            continue
        for source, row in matrix["accuracy"].items():
            if column in row:
                key = f"blackbox:{os.path.basename(os.path.normpath(source))}:{matrix.get('attack')}"
                out[key] = {"accuracy": row[column], "examples": matrix.get("examples")}
    return out


def run_results(run_dir: str, target: str | None = None) -> dict | None:
    """What one run directory measured: results.json's white-box entries and the black-box
    columns of its transfer matrices (`blackbox:<source>:<attack>`, the column of `target`
    or of the matrix's only target).

    Args:
        run_dir: the run directory.
        target: the target model's flagfile stem (or run directory name) in the matrices.

    Returns:
        {attack: {"accuracy": fraction, "examples": n, ...}}, or None when the run has
        neither results.json nor a transfer matrix.

    Raises:
        CompareError: unreadable JSON.
    """
    results = _read_json(os.path.join(run_dir, "results.json"))
    transferred = _transfer_results(run_dir, target)
    if results is None and not transferred:
        return None
    return {**(results or {}), **transferred}


def compare_runs(run_dirs: Iterable[str]) -> list[dict]:
    """Our accuracies next to the published ones, one row per (run, attack).

    The published columns of the matched row come first (in the paper's order), then any
    attack the run evaluated that the paper does not report.

    Args:
        run_dirs: run directories (results.json and/or transfer*.json inside).

    Returns:
        Dicts with keys run, stem (None when no published row matches), paper, table, row,
        attack, ours (%), published (%), delta (points, ours - published; None unless both
        exist), examples, note.

    Raises:
        CompareError: a run directory is missing or holds unreadable JSON.
    """
    rows = []
    for run_dir in run_dirs:
        run_dir = os.path.normpath(run_dir)
        if not os.path.isdir(run_dir):
            raise CompareError(f"{run_dir}: no such run directory")
        flags = _read_json(os.path.join(run_dir, "flags.json")) or {}
        stem = match_run(run_dir, flags)
        entry = PUBLISHED.get(stem) if stem else None
        results = run_results(run_dir, entry.get("target") if entry else None)
        note = "" if results is not None else NO_RESULTS
        results = results or {}
        published = entry["results"] if entry else {}
        attacks = list(published) + [a for a in results if a not in published]
        if not attacks:
            attacks = [None]
        for attack in attacks:
            ours_entry = results.get(attack) if attack else None
            ours = _percent(ours_entry.get("accuracy")) if isinstance(ours_entry, dict) else None
            pub = published.get(attack) if attack else None
            rows.append(
                {
                    "run": run_dir,
                    "stem": stem,
                    "paper": entry["paper"] if entry else None,
                    "table": entry["table"] if entry else None,
                    "row": entry["row"] if entry else None,
                    "attack": attack,
                    "ours": ours,
                    "published": pub,
                    "delta": round(ours - pub, 4) if ours is not None and pub is not None else None,
                    "examples": ours_entry.get("examples") if isinstance(ours_entry, dict) else None,
                    "note": note or ("" if entry else "no published row matches this run"),
                }
            )
    return rows


def _num(value, signed=False) -> str:
    if value is None:
        return DASH
    return f"{value:+.2f}" if signed else f"{value:.2f}"


def compare_markdown(rows: list[dict]) -> str:
    """A side-by-side Markdown table of `compare_runs` rows.

    Args:
        rows: the output of `compare_runs`.

    Returns:
        Markdown: run, published row, attack, ours (%), published (%), delta (points),
        examples; then the mean |delta| and the runs without a match or without results.
    """
    lines = [
        "| run | published row | attack | ours (%) | published (%) | delta (points) | examples |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        if r["stem"]:
            paper = PAPERS.get(r["paper"], {}).get("short", r["paper"])
            where = f"{r['stem']} ({paper}, table {r['table']}, {r['row']})"
        else:
            where = DASH
        attack = r["attack"] or DASH
        if r["note"] and r["attack"] is None:
            attack = f"{DASH} ({r['note']})"
        examples = r["examples"] if r["examples"] is not None else DASH
        lines.append(
            f"| {r['run']} | {where} | {attack} | {_num(r['ours'])} | {_num(r['published'])} | "
            f"{_num(r['delta'], signed=True)} | {examples} |"
        )
    compared = [r for r in rows if r["delta"] is not None]
    if compared:
        mean_abs = sum(abs(r["delta"]) for r in compared) / len(compared)
        lines += [
            "",
            f"{len(compared)} numbers compared; mean |delta| {mean_abs:.2f} points. "
            "Published numbers: lrm_tf/report/published.json; rows and decisions: flags/README.md.",
        ]
    unmatched = sorted({r["run"] for r in rows if not r["stem"]})
    if unmatched:
        lines += [
            "",
            "No published row matches: "
            + ", ".join(unmatched)
            + " (name the run directory after its flagfile, runs/<flagfile stem>).",
        ]
    missing = sorted({r["run"] for r in rows if r["note"] == NO_RESULTS})
    if missing:
        lines += ["", "No results yet (results.json, transfer*.json): " + ", ".join(missing) + "."]
    return "\n".join(lines) + "\n"


def write_comparison(out_dir: str, rows: list[dict]) -> tuple[str, str]:
    """Writes comparison.json ({"rows": rows}) and comparison.md through the report writer.

    Args:
        out_dir: the directory (created if missing).
        rows: the output of `compare_runs`.

    Returns:
        (json_path, md_path).
    """
    os.makedirs(out_dir, exist_ok=True)
    return write_report(
        out_dir, "comparison", {"rows": rows}, "# Ours vs published\n\n" + compare_markdown(rows)
    )
