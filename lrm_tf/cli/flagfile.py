"""The one flagfile reader: nested `--flagfile` lines resolved relative to the including file.

A flagfile holds one flag per line (`--name=value`, or `--name` for a true boolean); blank lines
and lines starting with `#` or `//` are ignored, as absl does. A `--flagfile=PATH` line includes
another flagfile in its place, so later lines override the included ones (the last value wins);
this is how a table row's flagfile includes its paper's recipe from flags/base/.

absl resolves a nested path against the current directory, so `--flagfile=base/x.cfg` inside
flags/row.cfg only works from flags/. Here a relative nested path is resolved against the folder
of the file that includes it, from any working directory; a path given on the command line is
resolved against the current directory, as absl does. The entry point calls `expand_flagfiles`
before absl parses; tests and benchmarks read flagfiles with `read_flagfile`. No TensorFlow here.
"""

from __future__ import annotations

import os
import re

_FLAG = re.compile(r"^--?([A-Za-z0-9_]+)(?:=(.*))?$")


def _directive(arg: str) -> str | None:
    """The path of a `--flagfile=PATH` (or `-flagfile=PATH`) argument, else None."""
    for prefix in ("--flagfile=", "-flagfile="):
        if arg.startswith(prefix):
            return arg[len(prefix) :]
    return None


def _file_lines(path: str, stack: tuple[str, ...]) -> list[tuple[str, str]]:
    """(flag line, the file it is in) of one flagfile, nested flagfiles expanded in place."""
    real = os.path.realpath(path)
    if real in stack:
        chain = " -> ".join([*stack, real])
        raise ValueError(f"--flagfile={path}: includes itself ({chain})")
    try:
        with open(path, encoding="utf-8") as f:
            raw = f.read().splitlines()
    except OSError as e:
        raise ValueError(f"--flagfile={path}: cannot open the file ({e.strerror or e})") from None
    folder = os.path.dirname(path)
    out = []
    for line in raw:
        line = line.strip()
        if not line or line.startswith("#") or line.startswith("//"):
            continue
        nested = _directive(line)
        if nested is None:
            out.append((line, path))
            continue
        nested = os.path.expanduser(nested)
        if not os.path.isabs(nested):
            nested = os.path.join(folder, nested)
        out += _file_lines(nested, (*stack, real))
    return out


def expand_flagfiles(argv: list[str]) -> list[str]:
    """The arguments of `expand_with_origins(argv)` (what absl parses), without their origins."""
    return [arg for arg, _ in expand_with_origins(argv)]


def expand_with_origins(argv: list[str]) -> list[tuple[str, str]]:
    """Replaces every `--flagfile=PATH` by the flag lines of that file, recursively.

    Paths on the command line are relative to the current directory; a `--flagfile` line
    inside a flagfile is relative to that file's folder. `--flagfile PATH` (two arguments) is
    accepted on the command line as absl accepts it. Arguments after a bare `--` are left as
    they are (absl stops parsing flags there).

    Args:
        argv: the command line, program name first (as absl's `FLAGS(argv)` takes it).

    Returns:
        The command line with no `--flagfile` left, every other argument in its place, each
        with where it was written: "command line" or "flagfile: PATH" (the file holding the
        line; `expand_flagfiles` returns the arguments alone).

    Raises:
        ValueError: a flagfile cannot be read or includes itself; the message starts with
            `--flagfile=PATH`.
    """
    out, i = [], 0
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            out += [(a, "command line") for a in argv[i:]]
            break
        path = _directive(arg) if i > 0 else None
        if path is None and i > 0 and arg in ("--flagfile", "-flagfile"):
            if i + 1 >= len(argv):
                raise ValueError(f"{arg}: a file name must follow")
            path, i = argv[i + 1], i + 1
        if path is None:
            out.append((arg, "command line"))
        else:
            out += [(line, f"flagfile: {where}") for line, where in _file_lines(os.path.expanduser(path), ())]
        i += 1
    return out


def read_flagfile(path: str) -> dict[str, str]:
    """The flags a flagfile sets, nested flagfiles included.

    Args:
        path: the flagfile (relative paths from the current directory).

    Returns:
        {flag name: value as written}, the last value of a name winning; a bare `--name` maps to
        "true". Values are strings, as absl would receive them (`--lr_boundaries=` gives "").
        A negated boolean `--noname` is returned under "noname": this reader does not know the
        flag definitions (absl does).

    Raises:
        ValueError: the file (or a nested one) cannot be read, includes itself, or holds a line
            that is not a flag.
    """
    values = {}
    for line, _ in _file_lines(path, ()):
        m = _FLAG.match(line)
        if not m:
            raise ValueError(f"--flagfile={path}: not a flag: {line!r}")
        values[m.group(1)] = m.group(2) if m.group(2) is not None else "true"
    return values


def flag_name(arg: str) -> str | None:
    """The name in a `--name[=value]` argument (`--noname` gives "noname"), else None."""
    m = _FLAG.match(arg)
    return m.group(1) if m else None
