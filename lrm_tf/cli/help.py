"""`--help`: the flags grouped by what they are for, each objective term in one line with its
paper, and exit status 0 (`--helpfull` keeps absl's list of every flag).

A config flag's group is where its setting is declared: its class's `HELP_GROUP`, or the
field's own `setting(group=...)`; the entry point's own flags say theirs where they are
defined (`lrm_tf.cli.flags`). The objective terms are the fields declared with
`setting(term=...)`. Only the titles and order of the groups live here.
"""

from __future__ import annotations

import dataclasses
import textwrap

from lrm_tf import config
from lrm_tf.cli import flags as cli_flags
from lrm_tf.cli.flags import FLAGS

# group -> its title, in the order `--help` lists them
GROUPS = {
    "run": "Run: what to do and where",
    "data": "Data",
    "model": "Model",
    "optimisation": "Optimisation",
    "objective": "Objective terms: the loss is the cross-entropy plus each term whose flag is set",
    "evaluation": "Evaluation: the threat model, attacks, curves and transfer",
    "analysis": "Analysis (--mode=analyze) and the gradient-masking audit (--mode=audit)",
    "execution": "Execution: devices, precision, compilation, logging",
}
WIDTH = 100
USAGE = (
    "usage: python -m lrm_tf.main --flagfile=flags/<row>.cfg [--flag=value ...]\n"
    "A flagfile holds one table row of the papers (flags/README.md lists them); flags after it win.\n"
    "--helpfull lists every flag in absl's format, absl's own included."
)


def _groups() -> tuple[dict[str, list[str]], list[tuple[str, str]]]:
    """({group: [flag]}, [(flag, term)]) from where each setting is declared."""
    groups: dict[str, list[str]] = {name: [] for name in GROUPS}
    fields = [(cls, f) for cls in config.FLAG_CONFIGS for f in cli_flags.config_flags(cls)]
    from_config = {f.name for _, f in fields}
    own = [
        f.name
        for module in ("lrm_tf.cli.modes", "lrm_tf.cli.flags")
        for f in FLAGS.get_flags_for_module(module)
        if f.name not in from_config
    ]
    for name in own:
        groups[cli_flags.OWN_GROUPS.get(name, "run")].append(name)
    for cls, field in fields:
        groups[field.metadata.get("group") or cls.HELP_GROUP].append(field.name)
    terms = [(f.name, f.metadata["term"]) for _, f in fields if f.metadata.get("term")]
    return groups, terms


def _choices(name: str) -> str:
    parser = FLAGS[name].parser
    values = getattr(parser, "enum_values", None)
    if values is None:
        for cls in config.FLAG_CONFIGS:
            field = {f.name: f for f in dataclasses.fields(cls)}.get(name)
            if field is not None:
                values = field.metadata.get("choices")
    return "|".join(map(str, values)) if values else ""


FLAGFILE = [
    "  --flagfile=<file>",
    "      read flags from a file, one per line (nested --flagfile= lines are relative to the file)",
]


def _entry(name: str) -> list[str]:
    flag = FLAGS[name]
    if flag.boolean:
        head = f"  --[no]{name} (default: {str(flag.default).lower()})"
    else:
        choices = _choices(name)
        default = cli_flags.show(flag.default) if flag.default not in (None, []) else ""
        head = f"  --{name}" + (f"=<{choices}>" if choices else "") + f" (default: {default or 'none'})"
    help_text = " ".join(flag.help.split())
    if help_text.startswith("<") and ">: " in help_text:  # absl's choices, already in the head
        help_text = help_text.split(">: ", 1)[1]
    body = textwrap.wrap(help_text, WIDTH - 6, break_on_hyphens=False)
    return [head, *("      " + line for line in body)]


def render() -> str:
    """The `--help` text."""
    lines = [USAGE]
    groups, terms = _groups()
    for group, names in groups.items():
        if not names:
            continue
        lines += ["", GROUPS[group]]
        if group == "objective":
            for name, term in terms:
                lines += textwrap.wrap(
                    f"--{name}: {term}", WIDTH, initial_indent="  * ", subsequent_indent="    "
                )
            lines.append("")
        for name in names:
            lines += _entry(name)
        if group == "run":
            lines += FLAGFILE
    return "\n".join(lines) + "\n"


HELP_ARGS = ("--help", "-help", "-h", "-?", "--help=true")


def wants_help(argv) -> bool:
    """Whether the command line asks for `--help` (before a `--` that ends the flags)."""
    args = list(argv[1:])
    if "--" in args:
        args = args[: args.index("--")]
    return any(a in HELP_ARGS for a in args)
