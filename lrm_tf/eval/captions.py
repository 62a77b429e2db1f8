"""What an attack was and what it reached, in words, for figure captions and titles: the
name, the number of steps and their size, eps and its norm, restarts, and the accuracy."""

from __future__ import annotations

from lrm_tf import attacks
from lrm_tf.attacks import AttackSpec, ensemble
from lrm_tf.config import Threat


def _size(threat: Threat, norm: str) -> str:
    return f"eps {threat.eps:.4g} ({'L2' if norm == 'l2' else 'L-inf'})"


def attack_strength(spec: AttackSpec | str, threat: Threat) -> str:
    """The attack's strength: steps and step size, eps and norm, loss, restarts.

    Args:
      spec: an AttackSpec or an attack name.
      threat: its eps, step and restarts.

    Returns:
      e.g. 'pgd40_xent: 40 steps of 0.01, eps 0.3 (L-inf), xent loss, random start' or
      'apgd_ce: 100 steps of adaptive size (from 2 eps), eps 0.3 (L-inf), ce loss'.
    """
    spec = attacks.parse_attack(spec) if isinstance(spec, str) else spec
    if spec.family == "clean":
        return "clean: no attack"
    stages = ensemble.stages(spec)
    if stages is not None:
        return f"{spec.name}: {' + '.join(s.attack for s in stages)}, {_size(threat, spec.norm)}"
    if spec.family in ("pgd",):
        steps = f"{spec.steps} steps of {threat.eps_step:.4g}"
    elif spec.family == "fgsm":
        steps = "one step of eps" if not spec.rand_init else "a random step, then one gradient step"
    elif spec.family == "apgd":
        steps = f"{spec.steps} steps of adaptive size (from 2 eps)"
    elif spec.family in ("square", "spsa"):
        steps = f"{spec.steps} {'queries' if spec.family == 'square' else 'iterations'}, no gradient"
    else:
        steps = f"{spec.steps} steps"
    parts = [steps, _size(threat, spec.norm)]
    if spec.loss not in ("none", ""):
        parts.append(f"{spec.loss} loss")
    if spec.targeted:
        parts.append(f"target {spec.target}")
    if spec.rand_init and spec.family != "fgsm":
        parts.append("random start" if threat.restarts == 1 else f"{threat.restarts} random starts")
    return f"{spec.name}: {', '.join(parts)}"


def attack_line(spec: AttackSpec | str, threat: Threat, accuracy: float, examples: int) -> str:
    """'attack <strength>: accuracy <a>% of <n> examples' (`attack_strength`)."""
    return f"attack {attack_strength(spec, threat)}: accuracy {100 * accuracy:.1f}% of {examples} examples"
