"""The command-line flags: a few of their own (what to do, where), the rest generated from the
fields of `lrm_tf.config`, so that each setting is declared once.

A field becomes the flag of the same name, with its default and help; tuple fields take
comma-separated values. `build(cls)` turns the parsed flags back into a config object, and a
bad value becomes a `UsageError` naming the flag.
"""

from __future__ import annotations

import dataclasses

from absl import flags

from lrm_tf import config

FLAGS = flags.FLAGS


class UsageError(Exception):
    """A bad flag value: reported as one line, exit status 2."""


# ----------------------------------------------------------------------------- the entry point's own
# (--mode is defined beside the table of modes, in lrm_tf.cli.modes; its group is 'run')
OWN_GROUPS: dict[str, str] = {}  # flag -> its `--help` group, where not 'run'


def _own(define, name: str, default, help_text: str, group: str = "run") -> None:
    """Defines one of the entry point's own flags, in the `--help` group `group`."""
    define(name, default, help_text)
    if group != "run":
        OWN_GROUPS[name] = group


_own(flags.DEFINE_string, "model_dir", "runs/default", "the run directory")
_own(
    flags.DEFINE_string,
    "load_from",
    "",
    "run directory or SavedModel to evaluate or analyze (default: "
    "--model_dir); for --mode=transfer a comma-separated list of source models",
)
_own(
    flags.DEFINE_list,
    "transfer_targets",
    [],
    "transfer: models that classify each source's examples (default: the sources)",
    group="evaluation",
)
_own(
    flags.DEFINE_list,
    "compare_runs",
    [],
    "--mode=compare: run directories to set beside the papers' numbers "
    "(none: print the claims table of benchmarks/RESULTS.md)",
)
_own(
    flags.DEFINE_string,
    "table",
    "",
    "--mode=reproduce: the paper table (lrm_t1, lrm_t2, shafahi_t2, alp_t1, poster_cifar10, ..., all); "
    "its runs go to --model_dir/<flagfile stem> (default runs/, runs/scale_<scale> when reduced)",
)
_own(
    flags.DEFINE_bool,
    "plan",
    False,
    "--mode=reproduce: print every run, its status, command and cost; run nothing",
)
_own(
    flags.DEFINE_float,
    "scale",
    1.0,
    "--mode=reproduce: train every row for this fraction of its iterations, schedule compressed "
    "alike (0.02: the CPU-scale reproduction)",
)
_own(flags.DEFINE_integer, "workers", 1, "--mode=reproduce: rows run at the same time (one GPU each)")
_own(
    flags.DEFINE_string,
    "shard",
    "0/1",
    "--mode=reproduce: i/n: this host runs every n-th row from the i-th, over a shared --model_dir",
)
_own(flags.DEFINE_bool, "export", True, "after training, write saved_model/ and model.keras (off: dry runs)")
_own(flags.DEFINE_bool, "overwrite", False, "replace a finished run in --model_dir instead of refusing")
_own(
    flags.DEFINE_bool,
    "deterministic",
    False,
    "seed everything and turn on TensorFlow op determinism",
    group="execution",
)


def default_text(value) -> list | str | None:
    """A config value as its flag holds it (a tuple as a list of strings, as absl parses it)."""
    if isinstance(value, tuple):
        return [format(v, "g") if isinstance(v, float) else str(v) for v in value]
    return value


def show(value) -> str:
    """A flag's value as it is written on the command line (0.0001, 100,150)."""
    if isinstance(value, (list, tuple)):
        return ",".join(show(v) for v in value)
    return format(value, "g") if isinstance(value, float) else str(value)


def recipe_help(name: str) -> str:
    """What `--help` adds to a setting that the datasets' recipes set when it is not given."""
    from lrm_tf.data.registry import DATASETS, RECIPES

    by_value: dict[str, list[str]] = {}
    for dataset, info in DATASETS.items():
        settings = RECIPES[info.recipe].settings if info.recipe else {}
        if name in settings:
            by_value.setdefault(show(default_text(settings[name])) or "none", []).append(dataset)
    if not by_value:
        return ""
    each = "; ".join(f"{', '.join(names)}: {value}" for value, names in by_value.items())
    return f" [not given: the dataset's recipe in --mode=train ({each}); other datasets: the default]"


def _define(field: dataclasses.Field) -> None:
    meta = field.metadata
    default = None if field.default is dataclasses.MISSING else field.default
    kind, help_text, choices = meta["kind"], meta["help"] + recipe_help(field.name), meta["choices"]
    if kind.endswith("s") and kind != "bool" or isinstance(default, tuple):
        flags.DEFINE_list(field.name, default_text(default), help_text)
    elif choices and kind == "str":
        flags.DEFINE_enum(field.name, default, list(choices), help_text)
    elif kind == "bool":
        flags.DEFINE_bool(field.name, default, help_text)
    elif kind == "int":
        flags.DEFINE_integer(field.name, default, help_text)
    elif kind == "float":
        flags.DEFINE_float(field.name, default, help_text)
    else:
        flags.DEFINE_string(field.name, default, help_text)


def config_flags(cls) -> list[dataclasses.Field]:
    """The fields of a config class that are command-line flags."""
    return [f for f in dataclasses.fields(cls) if f.metadata.get("flag", False)]


for _cls in config.FLAG_CONFIGS:
    for _field in config_flags(_cls):
        _define(_field)


def _convert(field: dataclasses.Field, value):
    kind = field.metadata["kind"]
    if kind not in ("floats", "ints"):
        return tuple(value) if isinstance(value, list) else value
    try:
        numbers = tuple(float(v) for v in value)
    except ValueError:
        raise UsageError(f"--{field.name}: expected comma-separated numbers, got {','.join(value)}") from None
    if kind == "ints":
        if any(n != int(n) for n in numbers):
            raise UsageError(f"--{field.name}={','.join(value)}: expected whole numbers")
        numbers = tuple(int(n) for n in numbers)
    return numbers


def build(cls, **overrides):
    """The config object `cls` from the parsed flags (and `overrides`, e.g. resolved defaults).

    Raises:
      UsageError: a value its field rejects, as one line naming the flag (and saying which
        named values came from the dataset's recipe, not the user).
    """
    values = {f.name: _convert(f, FLAGS[f.name].value) for f in config_flags(cls)}
    values.update(overrides)
    try:
        return cls(**values)
    except config.ConfigError as e:
        from lrm_tf.cli.sources import explain  # it imports this module

        raise UsageError(explain(e.render("--"))) from None


def resolved() -> dict:
    """{flag: value} of every lrm_tf flag as parsed (what flags.json records)."""
    own = {f.name for module in (__name__, "lrm_tf.cli.modes") for f in FLAGS.get_flags_for_module(module)}
    return {name: FLAGS[name].value for name in sorted(own)}


def given(exclude=()) -> dict[str, str]:
    """{flag: its value as a command line writes it} of the lrm_tf flags given explicitly (on
    the command line or in a flagfile), less those in `exclude`."""
    values = {n: FLAGS[n].value for n in resolved() if FLAGS[n].present and n not in exclude}
    return {n: str(v).lower() if isinstance(v, bool) else show(v) for n, v in values.items()}
