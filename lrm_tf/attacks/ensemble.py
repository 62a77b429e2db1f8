"""Attack ensembles: AutoAttack's standard and rand versions as attack names.

Croce & Hein 2020, "Reliable evaluation of adversarial robustness with an ensemble of diverse
parameter-free attacks" (arXiv:2003.01690), section 4: the standard version runs APGD-CE,
APGD-T (targeted DLR, 9 targets), FAB-T (9 targets) and Square (5000 queries) in this order,
each from the clean input and only on the points still robust; a point broken by any attack
counts as broken (a per-example worst case). The rand version, for models with random
inference, runs APGD-CE and APGD-DLR with 20 EOT samples.

`ENSEMBLES` is the table of ensembles (name -> stages); each has an attack family of the same
name in `lrm_tf.attacks.registry.FAMILIES` (`FAMILIES` below), so `autoattack`,
`autoattack_l2` and `autoattack_rand` are attack names like any other. The evaluation
(`lrm_tf.eval.autoattack`) runs the stages batch after batch of the points still robust and
reports the robust accuracy after each; `build_attack` of an ensemble name gives the same
adversarial examples from one in-graph function (every stage on the batch's robust points).
"""

from __future__ import annotations

import dataclasses

import tensorflow as tf

from lrm_tf.attacks import _common
from lrm_tf.attacks.spec import AttackFamily, AttackSpec
from lrm_tf.config import Threat

AA_TARGETS = 9  # target classes of APGD-T and FAB-T in the standard version
EOT_SAMPLES = 20  # EOT iterations of the rand version


@dataclasses.dataclass(frozen=True)
class Stage:
    """One attack of an ensemble.

    Attributes:
      attack: the attack name in the default (L-inf) norm, e.g. 'apgd_ce'; an L2 ensemble
        runs its L2 version.
      options: overrides of fields of the family's options object, e.g. (('eot_iter', 20),).
      targets: target classes the attack tries (the check "more targets than classes - 1").
      black_box: a score-based attack (Square): "it beat the white-box stages" is a warning.
    """

    attack: str
    options: tuple[tuple[str, object], ...] = ()
    targets: int = 0
    black_box: bool = False


ENSEMBLES: dict[str, tuple[Stage, ...]] = {
    "autoattack": (
        Stage("apgd_ce"),
        Stage("apgd_t", targets=AA_TARGETS),
        Stage("fab_t", targets=AA_TARGETS),
        Stage("square", black_box=True),
    ),
    "autoattack_rand": (
        Stage("apgd_ce", options=(("eot_iter", EOT_SAMPLES),)),
        Stage("apgd_dlr", options=(("eot_iter", EOT_SAMPLES),)),
    ),
}


def stages(spec: AttackSpec | str) -> tuple[Stage, ...] | None:
    """The stages of an ensemble spec (or family name), None for any other attack."""
    return ENSEMBLES.get(spec if isinstance(spec, str) else spec.family)


def stage_specs(spec: AttackSpec) -> list[tuple[Stage, AttackSpec]]:
    """(stage, its AttackSpec in the ensemble's norm) for each stage of an ensemble spec.

    Raises:
      ValueError: a stage's attack is not registered (yet), or has no version in the norm.
    """
    from lrm_tf.attacks.registry import parse_attack

    out = []
    for stage in ENSEMBLES[spec.family]:
        try:
            stage_spec = parse_attack(stage.attack)
            if stage_spec.norm != spec.norm:
                stage_spec = stage_spec.replace(norm=spec.norm)
        except ValueError as e:
            raise ValueError(f"{spec.name}: stage {stage.attack!r} is not available: {e}") from None
        out.append((stage, stage_spec))
    return out


def stage_options(stage: Stage, stage_spec: AttackSpec, options=None):
    """The options object stage `stage` runs with: the family's (or the caller's) with the
    stage's overrides.

    Raises:
      ValueError: the family has no option of an override's name (e.g. no EOT).
    """
    from lrm_tf.attacks.registry import family_options

    opts = family_options(stage_spec, options)
    if not stage.options:
        return opts
    names = {f.name for f in dataclasses.fields(opts)} if dataclasses.is_dataclass(opts) else set()
    missing = [k for k, _ in stage.options if k not in names]
    if missing:
        raise ValueError(
            f"stage {stage_spec.name} needs the option(s) {', '.join(missing)}, which the "
            f"'{stage_spec.family}' family does not have"
        )
    return dataclasses.replace(opts, **dict(stage.options))


def stage_threat(threat: Threat) -> Threat:
    """The threat each stage runs under: one restart, as in AutoAttack's standard version."""
    return dataclasses.replace(threat, restarts=1)


def stage_attacks(spec: AttackSpec, logits_fn, threat: Threat, options=None) -> list[tuple[Stage, object]]:
    """(stage, attack callable x, y, seed -> x_adv) for each stage of an ensemble spec."""
    from lrm_tf.attacks.registry import build_attack

    return [
        (stage, build_attack(s, logits_fn, stage_threat(threat), stage_options(stage, s, options)))
        for stage, s in stage_specs(spec)
    ]


def _build(spec, logits_fn, threat, options):
    """The in-graph ensemble: each stage on the batch's points still robust, from the clean x."""
    attacks = [attack for _, attack in stage_attacks(spec, logits_fn, threat, options)]

    def run(x, labels, seed):
        broken = _common.predicted_labels(logits_fn(x)) != labels
        x_adv = x
        for attack in attacks:
            index = tf.where(~broken)[:, 0]
            xs, ys = tf.gather(x, index), tf.gather(labels, index)
            candidate = attack(xs, ys, seed)
            newly = _common.predicted_labels(logits_fn(candidate)) != ys
            chosen = tf.where(_common.broadcast_mask(newly, xs), candidate, xs)
            x_adv = tf.tensor_scatter_nd_update(x_adv, index[:, None], chosen)
            broken = tf.tensor_scatter_nd_update(broken, index[:, None], newly)
        return x_adv

    return run


def ensemble_family(name: str) -> AttackFamily:
    """The attack family of the ensemble `name` of `ENSEMBLES` (a new ensemble, e.g. of
    stand-in attacks in a test, is an entry there and this family in the registry's
    FAMILIES under the same name)."""
    return AttackFamily(name=name, build=_build, multi_step=False, norms=("linf", "l2"))


FAMILIES: dict[str, AttackFamily] = {name: ensemble_family(name) for name in ENSEMBLES}
