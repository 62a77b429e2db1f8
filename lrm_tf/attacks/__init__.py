"""Adversarial attacks in pure TensorFlow, matching CleverHans (`cleverhans.tf2`) maths.

Entry points: `parse_attack(name) -> AttackSpec` and `build_attack(spec, model_fn, threat,
options)` (see `registry`; the threat model is `lrm_tf.config.Threat`, a family's own options
are its options class: `lrm_tf.config.SpsaOptions`, `FgsmOptions`); `as_logits_fn` adapts a
Keras model or a SavedModel to `images -> logits`. The attacks themselves: `fast_gradient_method`,
`projected_gradient_descent`, `spsa_attack` (= `lrm_tf.attacks.spsa.spsa`), `auto_pgd` (APGD,
APGD-T), `fab_targeted` (FAB-T), `square_attack`; the ensembles (`autoattack`) are in
`lrm_tf.attacks.ensemble` and run by `lrm_tf.eval.autoattack`. All work eagerly,
in `tf.function` and in `tf.distribute` replica contexts.
"""

from lrm_tf.attacks.adapters import as_logits_fn
from lrm_tf.attacks.apgd import ApgdOptions, auto_pgd, dlr_loss, dlr_targeted_loss
from lrm_tf.attacks.fab import FabOptions, fab_targeted
from lrm_tf.attacks.fgsm import FgsmOptions, fast_gradient_method
from lrm_tf.attacks.losses import cw_loss, margin_loss, xent_loss
from lrm_tf.attacks.pgd import pgd_spec, projected_gradient_descent, proportional_eps_step
from lrm_tf.attacks.registry import (
    FAMILIES,
    NAME_ALIASES,
    build_attack,
    evaluated_examples,
    family_options,
    format_attack,
    grammar,
    parse_attack,
)
from lrm_tf.attacks.restarts import restart_seed
from lrm_tf.attacks.spec import AttackFamily, AttackSpec

# Exported as spsa_attack so that `lrm_tf.attacks.spsa` stays the module.
from lrm_tf.attacks.spsa import spsa as spsa_attack
from lrm_tf.attacks.square import SquareOptions, square_attack
from lrm_tf.attacks.targeted import KURAKIN_SUITE, least_likely_target, random_target

__all__ = [
    "ApgdOptions",
    "FabOptions",
    "SquareOptions",
    "auto_pgd",
    "dlr_loss",
    "dlr_targeted_loss",
    "fab_targeted",
    "square_attack",
    "AttackFamily",
    "AttackSpec",
    "FAMILIES",
    "FgsmOptions",
    "KURAKIN_SUITE",
    "NAME_ALIASES",
    "as_logits_fn",
    "build_attack",
    "cw_loss",
    "evaluated_examples",
    "family_options",
    "fast_gradient_method",
    "format_attack",
    "grammar",
    "least_likely_target",
    "margin_loss",
    "parse_attack",
    "pgd_spec",
    "projected_gradient_descent",
    "proportional_eps_step",
    "random_target",
    "restart_seed",
    "spsa_attack",
    "xent_loss",
]
