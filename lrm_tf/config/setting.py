"""How a setting is declared: `setting(...)` fields, their checks, and the `Config` base that
runs them (`lrm_tf.config.training` and `lrm_tf.config.evaluation` hold the settings
themselves). No TensorFlow.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from typing import Any

Check = Callable[[Any], str | None]  # value -> None if fine, else what is wrong


class ConfigError(ValueError):
    """A bad setting: `field`, its `value`, and `reason`.

    `reason` may name other settings as `{name}`; `str()` writes them as plain names and
    `render("--")` as flags, so the library and the command line say the same thing.
    """

    def __init__(self, field: str, value: Any, reason: str):
        self.field, self.value, self.reason = field, value, reason
        super().__init__(self.render(""))

    def render(self, prefix: str = "") -> str:
        reason = re.sub(r"\{([a-z0-9_]+)\}", lambda m: prefix + m.group(1), self.reason)
        return f"{prefix}{self.field}={_show(self.value)}: {reason}"


def _show(value):
    if isinstance(value, (tuple, list)):
        return ",".join(_show(v) for v in value)
    return format(value, "g") if isinstance(value, float) else str(value)


# ----------------------------------------------------------------------------- field checks


def at_least(low) -> Check:
    return lambda v: None if v >= low else f"must be at least {low}"


def positive(v) -> str | None:
    return None if v > 0 else "must be > 0"


def scale_hint(v, high) -> str:
    """Why a value is beyond the input range, with the likely meant value (8 -> 8/255)."""
    hint = f"the [0, {high:g}] input scale" if high == 1 else f"an input range of width {high:g}"
    if high == 1 and 1 < v <= 255 and float(v).is_integer():
        hint += f"; did you mean {v:g}/255 = {v / 255:.4g}?"
    return f"must be at most {high:g}: values are in {hint}"


def input_scale(*, allow_zero: bool = False, width: float = 1.0) -> Check:
    """A size in the input scale (eps, a step, a noise std): > 0 (or >= 0) and at most the
    width of the input range ([0, 1] by default), so 8 meant as 8/255 is refused."""

    def check(v):
        if v < 0 or (v == 0 and not allow_zero):
            return "must be >= 0" if allow_zero else "must be > 0"
        return scale_hint(v, width) if v > width else None

    return check


def in_range(low, high, *, high_open=False) -> Check:
    def check(v):
        if low <= v < high if high_open else low <= v <= high:
            return None
        return f"must be in [{low}, {high}{')' if high_open else ']'}"

    return check


def each(check: Check) -> Check:
    def run(values):
        for v in values:
            problem = check(v)
            if problem:
                return f"{_show(v)}: {problem}"
        return None

    return run


def attack_name(v) -> str | None:
    if not v:
        return None
    from lrm_tf.attacks.registry import parse_attack  # the attack registry owns the grammar

    try:
        parse_attack(v)
    except ValueError as e:
        return str(e)
    return None


def attack_norm(name: str) -> str:
    """The norm of a (valid) attack name: 'linf', 'l2', or 'none' (clean, or no attack)."""
    if not name:
        return "none"
    from lrm_tf.attacks.registry import parse_attack

    return parse_attack(name).norm


def setting(
    default: Any = dataclasses.MISSING,
    help: str = "",
    *,
    choices=None,  # noqa: A002
    check: Check | None = None,
    kind: str | None = None,
    flag: bool = True,
    group: str | None = None,
    term: str = "",
):
    """Declares a config field.

    Args:
      default: the value when not given (omit for a required field: no default in Python, and
        the flag's default is None, resolved by the command line).
      help: one line for `--help`.
      choices: allowed values (for a tuple field: allowed items).
      check: value -> None, or the reason the value is wrong.
      kind: the flag type when the default does not tell: 'float', 'int', 'str', or a list of
        them, 'floats', 'ints', 'strs' (tuple fields; the flag takes comma-separated values).
      flag: False for library-only fields (no command-line flag).
      group: the `--help` group of its flag when not its class's `HELP_GROUP` (e.g. a
        device setting of the optimisation settings goes under 'execution').
      term: for the weight or switch of an objective term, the term in one line: its name,
        its paper and what it does (`--help` lists the terms).
    """
    if kind is None:
        kind = {bool: "bool", int: "int", float: "float", str: "str"}.get(type(default))
    if kind is None:
        raise TypeError(f"setting(default={default!r}): give kind=")
    meta = {
        "help": help,
        "choices": tuple(choices) if choices else None,
        "check": check,
        "kind": kind,
        "flag": flag,
        "group": group,
        "term": term,
    }
    return dataclasses.field(default=default, metadata=meta)


class Config:
    """Base of the config dataclasses: runs every field's check, then `check()`.

    `HELP_GROUP` names the `--help` group of the class's flags (one of
    `lrm_tf.cli.help.GROUPS`); a field may choose another with `setting(group=...)`.
    """

    HELP_GROUP = "run"

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = f.metadata.get("kind", "")
            if kind.endswith("s") and kind != "bool" and isinstance(value, (list, str)):
                value = tuple(value.split(",") if isinstance(value, str) else value)
                object.__setattr__(self, f.name, value)
            if value is None:
                continue
            problem = _type_problem(kind, value)
            choices = f.metadata.get("choices")
            if not problem and choices:
                items = value if kind.endswith("s") else (value,)
                bad = [v for v in items if v not in choices]
                if bad:
                    verb = "from" if kind.endswith("s") else "one of"
                    problem = f"choose {verb} {', '.join(map(str, choices))}"
            check = f.metadata.get("check")
            if not problem and check:
                problem = check(value)
            if problem:
                raise ConfigError(f.name, value, problem)
        self.check()

    def check(self) -> None:
        """Checks that involve several fields of this object; raise `ConfigError`."""

    def replace(self, **changes):
        """A copy with `changes` (checked again)."""
        return dataclasses.replace(self, **changes)


def _type_problem(kind, value):
    scalar = {"bool": bool, "int": int, "float": (int, float), "str": str}
    if kind in scalar:
        ok = isinstance(value, scalar[kind]) and not (kind in ("int", "float") and isinstance(value, bool))
        return None if ok else f"expected a {kind}"
    item = scalar[kind[:-1]]
    if not all(isinstance(v, item) and not isinstance(v, bool) for v in value):
        return f"expected {'numbers' if kind != 'strs' else 'names'}"
    return None
