"""Evaluation: accuracy under each named attack, results.json and the results.md table."""

from __future__ import annotations

import datetime
import time
from typing import Callable, Dict, Iterable, Optional

from lrm_tf.rundir import RunDir, write_json_atomic, write_text_atomic


def results_markdown(results: Dict[str, dict], title: str = "Results") -> str:
    """A table laid out like the papers': one row per attack, accuracy in percent."""
    lines = [f"# {title}", "", "| attack | accuracy | examples | parameters |",
             "|---|---:|---:|---|"]
    for name, r in results.items():
        params = ", ".join(f"{k}={v}" for k, v in sorted(r.get("params", {}).items()))
        lines.append(f"| {name} | {100 * r['accuracy']:.2f}% | {r['examples']} | {params} |")
    return "\n".join(lines) + "\n"


def write_results(run: RunDir, results: Dict[str, dict], title: str):
    write_json_atomic(run.results_json, results)
    write_text_atomic(run.results_md, results_markdown(results, title))


def print_table(results: Dict[str, dict], log: Callable[[str], None] = print):
    width = max([len(n) for n in results] + [6])
    log(f"{'attack':<{width}}  accuracy  examples")
    for name, r in results.items():
        log(f"{name:<{width}}  {100 * r['accuracy']:7.2f}%  {r['examples']:>8}")


def timestamp() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")
