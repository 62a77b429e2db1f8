"""The claims table: one row per claim of the papers tried on this machine, from `claims.json`.

Each claim in the data file beside this module has its text, its source (paper, table or
figure), the paper's number, ours (with the command that measured it), the budget it was
measured under and a verdict, one of VERDICTS, with its reason. The table opens
benchmarks/RESULTS.md (between the two markers below) and `python -m lrm_tf.main
--mode=compare` prints it when no --compare_runs are given. A claim that did not reproduce
stays in the table with its numbers; a claim not measured yet says so.

    python -m lrm_tf.report.claims            # print the table; exit 1 if RESULTS.md is stale
    python -m lrm_tf.report.claims --write    # regenerate the table in benchmarks/RESULTS.md

Nothing here imports TensorFlow.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from importlib import resources

DATA_FILE = "claims.json"
VERDICTS = ("reproduced", "not reproduced", "not testable here", "not measured yet")
FIELDS = ("claim", "source", "paper", "ours", "budget", "verdict", "reason", "command")
COMMAND = "python -m lrm_tf.report.claims --write"
BEGIN = f"<!-- claims: generated from lrm_tf/report/claims.json by `{COMMAND}`; do not edit -->"
END = "<!-- end of the claims table -->"
RESULTS = os.path.join("benchmarks", "RESULTS.md")


class ClaimsError(ValueError):
    """A claims entry with a missing field or an unknown verdict."""


def load(text: str | None = None) -> list[dict]:
    """The claims, in table order, checked.

    Args:
      text: the JSON to read (default: the packaged claims.json).

    Returns:
      A list of dicts with every key of FIELDS (strings).

    Raises:
      ClaimsError: a claim lacks a field, or its verdict is not one of VERDICTS.
    """
    if text is None:
        text = resources.files("lrm_tf.report").joinpath(DATA_FILE).read_text(encoding="utf-8")
    claims = json.loads(text)["claims"]
    for i, claim in enumerate(claims):
        missing = [f for f in FIELDS if not isinstance(claim.get(f), str) or not claim[f].strip()]
        if missing:
            raise ClaimsError(f"claim {i + 1} ({claim.get('claim', '?')!r}): missing {', '.join(missing)}")
        if claim["verdict"] not in VERDICTS:
            raise ClaimsError(
                f"claim {i + 1}: verdict {claim['verdict']!r} is not one of {', '.join(VERDICTS)}"
            )
    return claims


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown(claims: list[dict] | None = None) -> str:
    """The claims as a markdown table (claim, source, paper, ours, budget, verdict) followed by
    the numbered reasons and commands."""
    claims = load() if claims is None else claims
    head = "| # | claim | source | paper | ours | budget | verdict |\n|---:|---|---|---|---|---|---|\n"
    rows = "".join(
        f"| {i} | {_cell(c['claim'])} | {_cell(c['source'])} | {_cell(c['paper'])} | "
        f"{_cell(c['ours'])} | {_cell(c['budget'])} | **{c['verdict']}** |\n"
        for i, c in enumerate(claims, 1)
    )
    notes = "".join(f"{i}. {c['reason']} Command: `{c['command']}`\n" for i, c in enumerate(claims, 1))
    return head + rows + "\n" + notes


def render_results(text: str, claims: list[dict] | None = None) -> str:
    """RESULTS.md text with the table between BEGIN and END replaced (inserted at the top,
    after the title line, when the markers are absent)."""
    block = f"{BEGIN}\n{markdown(claims)}{END}"
    if BEGIN in text and END in text:
        before, rest = text.split(BEGIN, 1)
        return before + block + rest.split(END, 1)[1]
    title, _, body = text.partition("\n")
    return f"{title}\n\n## Claims tried on this machine\n\n{block}\n\n{body.lstrip()}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--write", action="store_true", help=f"regenerate the table in {RESULTS}")
    p.add_argument("--results", default=RESULTS, help="the RESULTS.md to check or write")
    args = p.parse_args(argv)
    with open(args.results, encoding="utf-8") as f:
        text = f.read()
    new = render_results(text)
    if args.write:
        if new != text:
            with open(args.results, "w", encoding="utf-8") as f:
                f.write(new)
        return 0
    print(markdown())
    if new != text:
        print(f"{args.results} is stale: run `{COMMAND}`", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
