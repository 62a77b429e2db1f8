"""Attack names -> attacks.

Grammar: `clean`, or `<prefix>[<steps>][_linf|_l2][_<objective>]` where the prefix is a
family (one per attack file, registered in FAMILIES) or an alias of one (NAME_ALIASES), the
steps number is present exactly for multi-step families, and the objective is a loss
(`xent`, `cw`; APGD's `ce`, `dlr` and `t`, its targeted DLR over the runner-up classes) or a
target selector (`ll`: least-likely class, `rand`: random wrong class). A family with a
reference count may omit it (`apgd_ce` = `apgd100_ce`).
Examples: fgsm_xent, rfgsm_cw, pgd20_cw, pgd40_l2_xent, iter10_ll, r_step_rand, spsa100, apgd_t.

Adding an attack: write `lrm_tf/attacks/<name>.py` exporting `FAMILY = AttackFamily(...)`
(with its own options class if it has settings the threat model does not cover) and add one
line to FAMILIES below.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable

import tensorflow as tf

from lrm_tf.attacks import _common, apgd, ensemble, fab, fgsm, pgd, spsa, square
from lrm_tf.attacks.adapters import as_logits_fn
from lrm_tf.attacks.spec import AttackFamily, AttackSpec
from lrm_tf.attacks.targeted import select_targets
from lrm_tf.config import Threat
from lrm_tf.inputs import check_images


def _build_clean(spec, logits_fn, threat, options):
    return lambda x, labels, seed: x


CLEAN = AttackFamily(name="clean", build=_build_clean, multi_step=False, norms=("none",))

FAMILIES: dict[str, AttackFamily] = {
    "clean": CLEAN,
    "fgsm": fgsm.FAMILY,
    "pgd": pgd.FAMILY,
    "spsa": spsa.FAMILY,
    "apgd": apgd.FAMILY,
    "fab": fab.FAMILY,
    "square": square.FAMILY,
    **ensemble.FAMILIES,  # autoattack, autoattack_rand: lrm_tf.attacks.ensemble
}

TARGET_OBJECTIVES = ("ll", "rand")


@dataclasses.dataclass(frozen=True)
class NameAlias:
    """A name prefix that means a registered family with a fixed random start, and possibly
    a narrower set of objectives."""

    family: str
    rand_init: bool
    objectives: tuple[str, ...] | None = None  # None: all the family allows


NAME_ALIASES: dict[str, NameAlias] = {
    "rfgsm": NameAlias("fgsm", rand_init=True, objectives=("xent", "cw")),  # Tramèr R+FGSM
    "step": NameAlias("fgsm", rand_init=False, objectives=TARGET_OBJECTIVES),  # Step-LL/Rand
    "r_step": NameAlias("fgsm", rand_init=True, objectives=TARGET_OBJECTIVES),  # R+Step-LL/Rand
    "iter": NameAlias("pgd", rand_init=False),  # BIM, Iter-LL
}


def _objectives(family: AttackFamily) -> tuple[str, ...]:
    return family.losses + (TARGET_OBJECTIVES if family.targetable else ())


def _prefix_rules() -> dict[str, tuple[AttackFamily, bool, tuple[str, ...]]]:
    """prefix -> (family, rand_init, allowed objectives)."""
    rules = {
        name: (family, family.default_rand_init, _objectives(family)) for name, family in FAMILIES.items()
    }
    for prefix, alias in NAME_ALIASES.items():
        family = FAMILIES[alias.family]
        rules[prefix] = (
            family,
            alias.rand_init,
            alias.objectives if alias.objectives is not None else _objectives(family),
        )
    return rules


def grammar() -> str:
    """A one-line description of the attack names."""
    parts = []
    for prefix, (family, _, objectives) in _prefix_rules().items():
        if prefix == "clean":
            continue
        steps = ("[<steps>]" if family.default_steps else "<steps>") if family.multi_step else ""
        norm = "[_l2]" if "l2" in family.norms else ""
        if objectives:
            slot = "_{" + "|".join(objectives) + "}"
            if not family.losses:
                slot = f"[{slot}]"
        else:
            slot = ""
        parts.append(f"{prefix}{steps}{norm}{slot}")
    return "clean | " + " | ".join(parts)


def parse_attack(name: str) -> AttackSpec:
    """Parses an attack name (see the module docstring).

    Args:
      name: e.g. 'fgsm_xent', 'pgd20_cw', 'pgd40_l2_xent', 'iter10_ll', 'spsa100'.

    Returns:
      The AttackSpec, with `name` as written.

    Raises:
      ValueError: one line naming what is wrong, with the grammar.
    """
    rules = _prefix_rules()
    prefixes = "|".join(sorted((re.escape(p) for p in rules), key=len, reverse=True))
    match = re.fullmatch(
        rf"(?P<prefix>{prefixes})(?P<steps>\d+)?(?:_(?P<norm>linf|l2))?"
        r"(?:_(?P<objective>[a-z]+))?",
        name or "",
    )

    def bad(reason: str) -> ValueError:
        return ValueError(
            f"bad attack name {name!r}: {reason}; names are {grammar()} "
            "(e.g. fgsm_xent, pgd20_cw, pgd40_l2_xent, iter10_ll, spsa100)"
        )

    if match is None:
        raise bad("unknown form")
    family, rand_init, objectives = rules[match["prefix"]]
    steps_text, norm, objective = match["steps"], match["norm"], match["objective"]
    if family.multi_step and steps_text is None and family.default_steps:
        steps_text = str(family.default_steps)  # the reference's standard count
    if family.multi_step and steps_text is None:
        raise bad(f"'{match['prefix']}' needs a step count, as in {match['prefix']}20")
    if not family.multi_step and steps_text is not None:
        raise bad(f"'{match['prefix']}' is single-step and takes no step count")
    steps = int(steps_text) if steps_text is not None else (0 if family is CLEAN else 1)
    if family.multi_step and steps < 1:
        raise bad("the step count must be >= 1")
    if norm is None:
        norm = family.norms[0]
    elif norm not in family.norms:
        raise bad(f"'{match['prefix']}' supports norms {family.norms}, not {norm}")
    if objective is None:
        if family.losses:
            raise bad(f"'{match['prefix']}' needs an objective: one of {'|'.join(objectives)}")
    elif objective not in objectives:
        allowed = "|".join(objectives) if objectives else "none"
        raise bad(f"objective '{objective}' not allowed after '{match['prefix']}' (allowed: {allowed})")
    if objective in TARGET_OBJECTIVES:
        target, loss = objective, (family.fixed_loss if not family.losses else "xent")
    elif objective is None:
        target, loss = "none", family.fixed_loss
    else:
        target, loss = "none", objective
    if family is CLEAN:
        rand_init = False
    return AttackSpec(
        family=family.name, steps=steps, loss=loss, norm=norm, rand_init=rand_init, target=target, name=name
    )


def format_attack(spec: AttackSpec) -> str:
    """The canonical name of a spec's fields: the inverse of `parse_attack`.

    Args:
      spec: an AttackSpec, e.g. `parse_attack('pgd20_xent').replace(steps=1000)`.

    Returns:
      A name that `parse_attack` turns back into the same fields ('pgd1000_xent'). The
      family's own prefix is preferred over an alias; the default norm is left out.

    Raises:
      ValueError: no name has these fields (e.g. an L2 SPSA).
    """
    family = FAMILIES[spec.family]
    if family is CLEAN:
        return "clean"
    objective = spec.target if spec.targeted else (spec.loss if family.losses else None)
    for prefix, (rule_family, rand_init, objectives) in _prefix_rules().items():
        if rule_family is not family or rand_init != spec.rand_init:
            continue
        if objective is not None and objective not in objectives:
            continue
        name = prefix + (str(spec.steps) if family.multi_step else "")
        name += f"_{spec.norm}" if spec.norm != family.norms[0] else ""
        name += f"_{objective}" if objective else ""
        if dataclasses.replace(parse_attack(name), name=spec.name) == spec:
            return name
    raise ValueError(f"no attack name has the fields of {spec}; names are {grammar()}")


def family_options(spec: AttackSpec | str, options=None):
    """The options object the family of `spec` runs with.

    Args:
      spec: an AttackSpec or an attack name.
      options: None, or an options object of any registered family (e.g. SpsaOptions); an
        object of another family's type is ignored, so a caller may pass the same options
        to every attack it builds.

    Returns:
      `options` when it is the family's type, else the family's defaults
      (`family.options()`), or None for a family without options.

    Raises:
      TypeError: `options` is not the options type of any registered family.
    """
    if isinstance(spec, str):
        spec = parse_attack(spec)
    known = tuple(f.options for f in FAMILIES.values() if f.options is not None)
    if options is not None and not isinstance(options, known):
        raise TypeError(
            f"options must be one of {', '.join(t.__name__ for t in known)} or "
            f"None, got {type(options).__name__}"
        )
    family = FAMILIES[spec.family]
    if family.options is None:
        return None
    return options if isinstance(options, family.options) else family.options()


def evaluated_examples(spec: AttackSpec | str, options=None) -> int:
    """How many leading examples of a test set the family of `spec` evaluates (0: all).

    Expensive families say so through `AttackFamily.examples` (SPSA: `spsa_examples`,
    because each example costs samples x iterations forward passes).

    Args:
      spec: an AttackSpec or an attack name.
      options: as for `family_options`.

    Returns:
      N > 0 for "the first N examples", 0 for all of them.
    """
    if isinstance(spec, str):
        spec = parse_attack(spec)
    family = FAMILIES[spec.family]
    if family.examples is None:
        return 0
    return int(family.examples(family_options(spec, options)))


def build_attack(
    spec: AttackSpec | str, model_fn, threat: Threat, options=None
) -> Callable[[tf.Tensor, tf.Tensor | None, tf.Tensor], tf.Tensor]:
    """An attack callable `attack(x, y, seed) -> x_adv` for a parsed spec (or a name).

    The callable works eagerly, in a `tf.function` and inside `strategy.run`. Random draws
    are keyed per example (see `lrm_tf.attacks._common`), so an example's result does not
    depend on its batch or on the replica split.

    Args:
      spec: an AttackSpec (`parse_attack`) or an attack name such as 'pgd20_xent'.
      model_fn: images -> logits. A Keras model is called with `training=False`; a loaded
        SavedModel signature with its single input and output (`as_logits_fn`).
      threat: the threat model, in the model's input scale ([0, 1] by default): `eps`, PGD's
        step `eps_step` (FGSM steps eps), the input range, `restarts` (worst case per
        example over that many random starts; applies to attacks with a random component:
        PGD, R+FGSM, R+Step, SPSA), `attack_true_labels` (False: untargeted attacks use the
        clean predictions, as the ALP code does; random targets avoid this reference class,
        least-likely targets are the argmin of the clean logits) and `attack_xla_step` (XLA
        on each PGD step).
      options: the family's options, e.g. `lrm_tf.config.SpsaOptions` for SPSA or
        `lrm_tf.attacks.fgsm.FgsmOptions` for R+FGSM's random step; None (or another
        family's options) gives the family's defaults.

    Returns:
      attack(x, y, seed): x float [B, H, W, C] in the threat's range, or uint8 [0, 255]
      (converted by `lrm_tf.inputs.check_images`); y int [B] true labels,
      None only when `threat.attack_true_labels` is False or for 'clean'; seed int [2]
      (None: (0, 0)). Returns x_adv, same shape and dtype as x, with no gradient. The
      callable carries the spec as `attack.spec`.

    Raises:
      ValueError: a bad name; options the family rejects for this threat; an L-inf eps or
        step beyond the input range (`Threat.check_norm`, a ConfigError); (when called)
        images of another dtype or, when their values are known, outside the threat's range.
      TypeError: `options` is no family's options type.
    """
    if isinstance(spec, str):
        spec = parse_attack(spec)
    family = FAMILIES[spec.family]
    threat.check_norm(spec.norm)  # an L-inf eps beyond the input range: 8 meant as 8/255
    logits_fn = as_logits_fn(model_fn)
    run = family.build(spec, logits_fn, threat, family_options(spec, options))
    true_labels = threat.attack_true_labels

    def attack(x, y=None, seed=None):
        x = check_images(tf.convert_to_tensor(x), threat.clip_min, threat.clip_max, where=spec.name)
        if family is CLEAN or _common.is_empty_batch(x):
            return x
        seed = _common.as_seed(seed)
        if x.shape.rank and x.shape[0] is None:
            # A batch that may be empty at run time (a replica's share of a short last batch):
            # oneDNN's fused convolution gradients reject a batch of 0 (TF 2.21), so skip it.
            return tf.cond(tf.shape(x)[0] > 0, lambda: attack_batch(x, y, seed), lambda: x)
        return attack_batch(x, y, seed)

    def attack_batch(x, y, seed):
        clean_logits = None
        if true_labels:
            if y is None:
                raise ValueError(f"{spec.name}: y is required when attack_true_labels=True")
            labels = tf.cast(y, tf.int64)
        else:
            clean_logits = logits_fn(x)
            labels = _common.predicted_labels(clean_logits)
        if spec.targeted:
            if clean_logits is None:
                clean_logits = logits_fn(x)
            labels = select_targets(spec.target, clean_logits, labels, seed, _common.example_keys(x))
        return tf.stop_gradient(run(x, labels, seed))

    attack.spec = spec
    return attack
