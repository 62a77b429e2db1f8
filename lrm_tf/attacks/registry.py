"""Attack names -> attacks.

Grammar: `clean`, or `<prefix>[<steps>][_linf|_l2][_<objective>]` where the prefix is a
family (one per attack file, registered in FAMILIES) or an alias of one (NAME_ALIASES), the
steps number is present exactly for multi-step families, and the objective is a loss
(`xent`, `cw`) or a target selector (`ll`: least-likely class, `rand`: random wrong class).
Examples: fgsm_xent, rfgsm_cw, pgd20_cw, pgd40_l2_xent, iter10_ll, r_step_rand, spsa100.

Adding an attack: write `lrm_tf/attacks/<name>.py` exporting `FAMILY = AttackFamily(...)` and
add one line to FAMILIES below.
"""
from __future__ import annotations

import dataclasses
import re
from typing import Callable, Optional

import tensorflow as tf

from lrm_tf.attacks import _common, fgsm, pgd, spsa
from lrm_tf.attacks.spec import AttackConfig, AttackFamily, AttackSpec
from lrm_tf.attacks.targeted import select_targets


def _build_clean(spec, logits_fn, config):
    return lambda x, labels, seed: x


CLEAN = AttackFamily(name="clean", build=_build_clean, multi_step=False, norms=("none",))

FAMILIES: dict[str, AttackFamily] = {
    "clean": CLEAN,
    "fgsm": fgsm.FAMILY,
    "pgd": pgd.FAMILY,
    "spsa": spsa.FAMILY,
}

TARGET_OBJECTIVES = ("ll", "rand")


@dataclasses.dataclass(frozen=True)
class NameAlias:
    """A name prefix that means a registered family with a fixed random start, and possibly
    a narrower set of objectives."""
    family: str
    rand_init: bool
    objectives: Optional[tuple[str, ...]] = None  # None: all the family allows


NAME_ALIASES: dict[str, NameAlias] = {
    "rfgsm": NameAlias("fgsm", rand_init=True, objectives=("xent", "cw")),     # Tramèr R+FGSM
    "step": NameAlias("fgsm", rand_init=False, objectives=TARGET_OBJECTIVES),  # Step-LL/Rand
    "r_step": NameAlias("fgsm", rand_init=True, objectives=TARGET_OBJECTIVES),  # R+Step-LL/Rand
    "iter": NameAlias("pgd", rand_init=False),                                  # BIM, Iter-LL
}


def _objectives(family: AttackFamily) -> tuple[str, ...]:
    return family.losses + (TARGET_OBJECTIVES if family.targetable else ())


def _prefix_rules() -> dict[str, tuple[AttackFamily, bool, tuple[str, ...]]]:
    """prefix -> (family, rand_init, allowed objectives)."""
    rules = {name: (family, family.default_rand_init, _objectives(family))
             for name, family in FAMILIES.items()}
    for prefix, alias in NAME_ALIASES.items():
        family = FAMILIES[alias.family]
        rules[prefix] = (family, alias.rand_init,
                         alias.objectives if alias.objectives is not None else _objectives(family))
    return rules


def grammar() -> str:
    """A one-line description of the attack names."""
    parts = []
    for prefix, (family, _, objectives) in _prefix_rules().items():
        if prefix == "clean":
            continue
        steps = "<steps>" if family.multi_step else ""
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
    """Parses an attack name (see the module docstring); ValueError names what is wrong."""
    rules = _prefix_rules()
    prefixes = "|".join(sorted((re.escape(p) for p in rules), key=len, reverse=True))
    match = re.fullmatch(rf"(?P<prefix>{prefixes})(?P<steps>\d+)?(?:_(?P<norm>linf|l2))?"
                         r"(?:_(?P<objective>[a-z]+))?", name or "")

    def bad(reason: str) -> ValueError:
        return ValueError(f"bad attack name {name!r}: {reason}; names are {grammar()} "
                          "(e.g. fgsm_xent, pgd20_cw, pgd40_l2_xent, iter10_ll, spsa100)")

    if match is None:
        raise bad("unknown form")
    family, rand_init, objectives = rules[match["prefix"]]
    steps_text, norm, objective = match["steps"], match["norm"], match["objective"]
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
        raise bad(f"objective '{objective}' not allowed after '{match['prefix']}' "
                  f"(allowed: {allowed})")
    if objective in TARGET_OBJECTIVES:
        target, loss = objective, (family.fixed_loss if not family.losses else "xent")
    elif objective is None:
        target, loss = "none", family.fixed_loss
    else:
        target, loss = "none", objective
    if family is CLEAN:
        rand_init = False
    return AttackSpec(family=family.name, steps=steps, loss=loss, norm=norm,
                      rand_init=rand_init, target=target, name=name)


def build_attack(spec: AttackSpec | str, model_fn, *, eps, eps_step, clip_min=0.0,
                 clip_max=1.0, restarts=1, use_true_labels=True, spsa_samples=128,
                 spsa_delta=0.01, spsa_lr=0.01, spsa_chunk_samples=32,
                 spsa_early_stop_loss=None, spsa_unbiased_gradient=False,
                 rand_step_alpha=None, jit_compile_step=False
                 ) -> Callable[[tf.Tensor, Optional[tf.Tensor], tf.Tensor], tf.Tensor]:
    """An attack callable `(x, y, seed) -> x_adv` for a parsed spec (or a name).

    model_fn: images -> logits (a Keras model is called with training=False; a loaded
      SavedModel signature with its single input and output).
    eps, eps_step: threat model in the input scale; eps_step is PGD's step (FGSM steps eps).
    restarts: worst case per example over that many random starts; applies to attacks with
      a random component (PGD, R+FGSM, R+Step, SPSA); deterministic ones run once.
    use_true_labels: untargeted attacks use y; False uses the clean predictions (ALP's code).
      Random targets avoid this reference class; least-likely targets are argmin of the clean
      logits.
    rand_step_alpha: R+FGSM / R+Step random step size (default eps / 2, Tramèr et al.).
    spsa_*: see `lrm_tf.attacks.spsa.spsa`. jit_compile_step: XLA on each PGD step.

    The callable works eagerly, in a tf.function and in `strategy.run`. seed: int [2]
    tensor; random draws are keyed per example (see `lrm_tf.attacks._common`), so the result
    of an example does not depend on its batch or on the replica split. y may be None only
    when use_true_labels=False or for 'clean'.
    """
    if isinstance(spec, str):
        spec = parse_attack(spec)
    family = FAMILIES[spec.family]
    config = AttackConfig(eps=eps, eps_step=eps_step, clip_min=clip_min, clip_max=clip_max,
                          restarts=restarts, use_true_labels=use_true_labels,
                          spsa_samples=spsa_samples, spsa_delta=spsa_delta, spsa_lr=spsa_lr,
                          spsa_chunk_samples=spsa_chunk_samples,
                          spsa_early_stop_loss=spsa_early_stop_loss,
                          spsa_unbiased_gradient=spsa_unbiased_gradient,
                          rand_step_alpha=rand_step_alpha, jit_compile_step=jit_compile_step)
    logits_fn = _common.as_logits_fn(model_fn)
    run = family.build(spec, logits_fn, config)

    def attack(x, y=None, seed=None):
        x = tf.convert_to_tensor(x)
        if not x.dtype.is_floating:
            x = tf.cast(x, tf.float32)
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
        if use_true_labels:
            if y is None:
                raise ValueError(f"{spec.name}: y is required when use_true_labels=True")
            labels = tf.cast(y, tf.int64)
        else:
            clean_logits = logits_fn(x)
            labels = _common.predicted_labels(clean_logits)
        if spec.targeted:
            if clean_logits is None:
                clean_logits = logits_fn(x)
            labels = select_targets(spec.target, clean_logits, labels, seed,
                                    _common.example_keys(x))
        return tf.stop_gradient(run(x, labels, seed))

    attack.spec = spec
    return attack
