"""The generated parts of flags/: every flagfile's header comment and the index of flags/README.md.

Both are copies of lrm_tf/report/published.json (read through lrm_tf.report.published): edit
the data file, then regenerate them with

    python -m lrm_tf.report.catalogue --write [--flags_dir=flags]

`python -m lrm_tf.report.catalogue` (or `--check`) lists the files that are stale and exits 1
when there are any; tests/test_flagfiles.py fails on them. A flagfile's header is its leading
block of `#` lines: the paper, table, row and published numbers (generated), then the entry's
"notes" (hand-written, kept in the data file). Everything after the header (the flags) is left
as it is. In flags/README.md only the text between the two index markers is generated.
Base flagfiles (flags/base/) are not table rows and are never touched. No TensorFlow here.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import textwrap

from lrm_tf.report.published import NOTES, PAPERS, PUBLISHED, UNPUBLISHED

WIDTH = 100  # characters of header text after "# "
COMMAND = "python -m lrm_tf.report.catalogue --write"
INDEX_BEGIN = f"<!-- index: generated from lrm_tf/report/published.json by `{COMMAND}`; do not edit -->"
INDEX_END = "<!-- end of the generated index -->"
_NUMBER_WORDS = {1: "one", 2: "two", 3: "three", 4: "four", 5: "five"}


def _wrap(text: str) -> list[str]:
    return [
        "# " + line for line in textwrap.wrap(text, WIDTH, break_on_hyphens=False, break_long_words=False)
    ]


def flagfile_header(stem: str) -> list[str]:
    """The header comment of flags/<stem>.cfg, one string per line.

    Args:
        stem: a flagfile stem with an entry in PUBLISHED or UNPUBLISHED.

    Returns:
        Lines starting with "#": for a published row the paper's title, its table and row,
        the published numbers (percent) and train accuracy, then the entry's notes; for a
        starting point (UNPUBLISHED) its notes only.

    Raises:
        KeyError: `stem` has no entry in lrm_tf/report/published.json.
    """
    if stem in UNPUBLISHED:
        return ["# " + line if line else "#" for line in NOTES[stem]]
    if stem not in PUBLISHED:
        raise KeyError(f"flags/{stem}.cfg has no entry in lrm_tf/report/published.json")
    entry = PUBLISHED[stem]
    where = f'Poster table "{entry["table"]}"' if entry["paper"] == "poster" else f"Table {entry['table']}"
    lines = ["# " + PAPERS[entry["paper"]]["title"], f'# {where}, row "{entry["row"]}" ({entry["dataset"]}).']
    if entry["results"]:
        lines += _wrap(
            "Published: " + ", ".join(f"{key} {value:g}%" for key, value in entry["results"].items()) + "."
        )
    if "train_accuracy" in entry:
        lines.append(f"# Published train accuracy: {entry['train_accuracy']:g}%.")
    return lines + ["# " + line if line else "#" for line in NOTES[stem]]


def short_source(source: str) -> str:
    """A black-box source as the index names it: the method part of a flagfile stem
    (lrm_bbsource_cifar10_pgd -> pgd, shafahi_t1_mnist_natural -> natural)."""
    m = re.match(r"^(?:lrm_draft|[a-z]+)_(?:bbsource|t\d+)_[a-z0-9]+_(.+)$", source)
    return m.group(1) if m else source


def _published_cell(entry: dict) -> str:
    cells = []
    for key, value in entry["results"].items():
        if key.startswith("blackbox:"):
            _, source, attack = key.split(":")
            cells.append(f"bb {short_source(source)}/{attack} {value:g}")
        else:
            cells.append(f"{key} {value:g}")
    text = ", ".join(cells) or "—"
    if "train_accuracy" in entry:
        text += f"; train {entry['train_accuracy']:g}"
    return text


def readme_index() -> str:
    """The index section of flags/README.md: one table per paper, one row per flagfile.

    Returns:
        Markdown, without the markers, ending in a newline.
    """
    counts = {paper: sum(e["paper"] == paper for e in PUBLISHED.values()) for paper in PAPERS}
    starting = _NUMBER_WORDS.get(len(UNPUBLISHED), str(len(UNPUBLISHED)))
    out = [
        f"{len(PUBLISHED)} flagfiles with a published row or role ("
        + ", ".join(f"{PAPERS[p]['short']} {n}" for p, n in counts.items() if n)
        + f"), plus the {starting} starting points. `bb <source>/<attack>`: black-box accuracy on "
        "examples made on the source model (the source flagfile's method, same dataset and "
        "table family).",
        "",
    ]
    for paper, info in PAPERS.items():
        stems = [stem for stem, e in PUBLISHED.items() if e["paper"] == paper]
        if not stems:
            continue
        out += [
            f"### {info['title']} (`{info['file']}`)",
            "",
            "| flagfile | table | row | dataset | published (%) |",
            "|---|---|---|---|---|",
        ]
        for stem in stems:
            e = PUBLISHED[stem]
            out.append(f"| `{stem}` | {e['table']} | {e['row']} | {e['dataset']} | {_published_cell(e)} |")
        out.append("")
    return "\n".join(out)


def render_flagfile(text: str, stem: str) -> str:
    """`text` (a flagfile) with its leading comment block replaced by the generated header."""
    lines = text.splitlines(keepends=True)
    start = 0
    while start < len(lines) and lines[start].startswith("#"):
        start += 1
    return "".join(line + "\n" for line in flagfile_header(stem)) + "".join(lines[start:])


def render_readme(text: str) -> str:
    """`text` (flags/README.md) with the part between the index markers regenerated.

    Raises:
        ValueError: the markers are missing.
    """
    begin, end = text.find(INDEX_BEGIN), text.find(INDEX_END)
    if begin < 0 or end < begin:
        raise ValueError(
            f"flags/README.md: the index markers are missing ({INDEX_BEGIN!r} ... {INDEX_END!r})"
        )
    return text[:begin] + INDEX_BEGIN + "\n\n" + readme_index() + "\n" + text[end:]


def generated_files(flags_dir: str) -> dict[str, str]:
    """Every generated file of `flags_dir` with the text it should have.

    Args:
        flags_dir: the flags/ folder (table rows are its *.cfg files; flags/base/ is skipped).

    Returns:
        {path: regenerated text} for every flagfile with an entry and for README.md.
    """
    out = {}
    for name in sorted(os.listdir(flags_dir)):
        stem = name[: -len(".cfg")]
        if name.endswith(".cfg") and (stem in PUBLISHED or stem in UNPUBLISHED):
            path = os.path.join(flags_dir, name)
            with open(path, encoding="utf-8") as f:
                out[path] = render_flagfile(f.read(), stem)
    readme = os.path.join(flags_dir, "README.md")
    with open(readme, encoding="utf-8") as f:
        out[readme] = render_readme(f.read())
    return out


def stale_files(flags_dir: str) -> list[str]:
    """Paths under `flags_dir` whose text differs from what the data file generates."""
    stale = []
    for path, text in generated_files(flags_dir).items():
        with open(path, encoding="utf-8") as f:
            if f.read() != text:
                stale.append(path)
    return stale


def write(flags_dir: str) -> list[str]:
    """Rewrites the stale generated files of `flags_dir`; returns their paths."""
    changed = []
    for path, text in generated_files(flags_dir).items():
        with open(path, encoding="utf-8") as f:
            if f.read() == text:
                continue
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        changed.append(path)
    return changed


def main(argv: list[str] | None = None) -> int:
    """The command line: check (exit 1 when stale) or --write.

    Args:
        argv: the arguments after the program name (default: sys.argv[1:]).

    Returns:
        The exit status.
    """
    p = argparse.ArgumentParser(
        prog="python -m lrm_tf.report.catalogue",
        description="Regenerate or check the flagfile headers and the "
        "flags/README.md index from lrm_tf/report/published.json.",
    )
    p.add_argument("--flags_dir", default="flags", help="the flags/ folder (default: ./flags)")
    p.add_argument("--write", action="store_true", help="rewrite the stale files")
    p.add_argument("--check", action="store_true", help="only list stale files (the default)")
    args = p.parse_args(argv)
    if args.write:
        for path in write(args.flags_dir):
            print(f"wrote {path}")
        return 0
    stale = stale_files(args.flags_dir)
    for path in stale:
        print(f"stale: {path}", file=sys.stderr)
    if stale:
        print(f"{len(stale)} stale file(s); run `{COMMAND}`", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
