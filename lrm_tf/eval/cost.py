"""How much work an attack is, relative to a forward pass: the weights of a step's parts in
its progress (a 1000-step PGD point of a curve counts 50 times a 20-step one), so that the
progress and the estimate of what is left (`lrm_tf.report.progress`) follow the time spent.

A rough model, for progress only: a forward pass counts 1, a forward and backward pass 3;
gradient-free attacks (Square, SPSA) run forward passes only.
"""

from __future__ import annotations

from lrm_tf import attacks
from lrm_tf.attacks import AttackSpec, ensemble
from lrm_tf.config import Threat

FORWARD, GRADIENT = 1.0, 3.0  # a forward pass; a forward and backward pass
CHECKS = 8.0  # AutoAttack's check pass: 5 forward passes and a DLR gradient


def attack_cost(spec: AttackSpec | str, threat: Threat, options=None) -> float:
    """Approximate model passes per example of `spec` under `threat` (>= 1).

    Args:
      spec: an AttackSpec or an attack name.
      threat: its restarts multiply an attack with a random start.
      options: a family's options (`lrm_tf.attacks.family_options`): SPSA's samples, APGD's
        and FAB's targets, EOT iterations.

    Returns:
      The cost in forward passes per example: 1 for 'clean'; an ensemble's is the sum of its
      stages' (each stage runs on the points still robust only, so it is an upper bound).
    """
    spec = attacks.parse_attack(spec) if isinstance(spec, str) else spec
    if ensemble.stages(spec) is not None:
        stage_threat = ensemble.stage_threat(threat)
        return CHECKS + sum(
            attack_cost(s, stage_threat, ensemble.stage_options(stage, s, options))
            for stage, s in ensemble.stage_specs(spec)
        )
    if spec.family == "clean":
        return FORWARD
    opts = attacks.family_options(spec, options)
    per_step = {"square": FORWARD, "spsa": FORWARD * getattr(opts, "spsa_samples", 1)}.get(
        spec.family, GRADIENT
    )
    if spec.loss == "t":  # APGD-T, FAB-T: one run per target class
        per_step *= getattr(opts, "n_target_classes", 1)
    per_step *= getattr(opts, "eot_iter", 1)
    restarts = threat.restarts if spec.rand_init else 1
    return FORWARD + per_step * max(spec.steps, 1) * restarts
