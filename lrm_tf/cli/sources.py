"""Where each setting's value comes from, and the dataset's recipe for the optimisation settings
a training run is not given.

`--mode=train` takes every optimisation setting the command line and its flagfiles leave out
from the dataset's recipe in the papers (`lrm_tf.data.registry.RECIPES`: Madry's for MNIST,
LRM's for CIFAR-10/100 and SVHN; digits has none and keeps the defaults). flags.json records,
under "_sources", where each value came from: "command line", "flagfile: PATH" (the file that
holds the line, a recipe included from flags/base/ too), "recipe: NAME", "run: PATH" (taken from
the flags.json of the run a mode reads), "dataset: NAME" (eps and eps_step left to the dataset's
threat model) or "default".
"""

from __future__ import annotations

import re

from lrm_tf.cli.flagfile import flag_name
from lrm_tf.cli.flags import FLAGS, default_text, resolved, show

_ORIGINS: dict[str, tuple[int, str]] = {}  # flag name as written -> (position, origin)
_RECIPE: dict[str, str] = {}  # flag -> the recipe that set it
_INHERITED: dict[str, str] = {}  # flag -> the run directory it was read from


def record_origins(args: list[tuple[str, str]]) -> None:
    """Remembers where each flag of a parsed command line was written (a new parse forgets
    the last one's origins, recipe and inherited values).

    Args:
      args: `flagfile.expand_with_origins(argv)`.
    """
    _ORIGINS.clear()
    _RECIPE.clear()
    _INHERITED.clear()
    for i, (arg, origin) in enumerate(args[1:]):
        if arg == "--":
            break
        name = flag_name(arg)
        if name:
            _ORIGINS[name] = (i, origin)


def apply_recipe() -> None:
    """Sets the optimisation settings `--mode=train` is not given from the dataset's recipe
    (nothing for other modes, which do not train, or a dataset without a recipe)."""
    from lrm_tf.data.registry import DATASETS, RECIPES

    info = DATASETS.get(FLAGS.dataset)
    if FLAGS.mode != "train" or info is None or not info.recipe:
        return
    recipe = RECIPES[info.recipe]
    for name, value in recipe.settings.items():
        if not FLAGS[name].present:
            FLAGS[name].value = default_text(value)
            _RECIPE[name] = recipe.name


def mark_inherited(name: str, path: str) -> None:
    """Records that flag `name` was taken from the flags.json of the run in `path`."""
    _INHERITED[name] = path


def sources() -> dict[str, str]:
    """{flag: where its value came from} for every flag flags.json records."""
    out = {}
    for name in resolved():
        flag = FLAGS[name]
        if flag.present:
            hits = [_ORIGINS[n] for n in (name, "no" + name) if n in _ORIGINS]
            out[name] = max(hits)[1] if hits else "command line"
        elif name in _INHERITED:
            out[name] = f"run: {_INHERITED[name]}"
        elif name in _RECIPE:
            out[name] = f"recipe: {_RECIPE[name]}"
        elif name in ("eps", "eps_step") and flag.value is None:
            out[name] = f"dataset: {FLAGS.dataset}"
        else:
            out[name] = "default"
    return out


def explain(message: str) -> str:
    """`message` (a one-line error naming flags) with a note on the flags it names whose value
    the user did not give but the dataset's recipe did."""
    named = [n for n in _RECIPE if re.search(rf"--{n}\b", message)]
    if not named:
        return message
    values = ", ".join(f"--{n}={show(FLAGS[n].value)}" for n in named)
    recipe = _RECIPE[named[0]]
    return f"{message} ({values}: not given, from {FLAGS.dataset}'s recipe {recipe}; set it too)"
