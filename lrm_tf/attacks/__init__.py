"""Adversarial attacks in pure TensorFlow, matching CleverHans (`cleverhans.tf2`) maths.

Entry points: `parse_attack(name) -> AttackSpec` and `build_attack(spec, model_fn, ...)`
(see `registry`); the attacks themselves: `fast_gradient_method`,
`projected_gradient_descent`, `spsa_attack` (= `lrm_tf.attacks.spsa.spsa`). All work eagerly,
in `tf.function` and in `tf.distribute` replica contexts.
"""
from lrm_tf.attacks.fgsm import fast_gradient_method
from lrm_tf.attacks.losses import cw_loss, margin_loss, xent_loss
from lrm_tf.attacks.pgd import projected_gradient_descent
from lrm_tf.attacks.registry import FAMILIES, NAME_ALIASES, build_attack, grammar, parse_attack
from lrm_tf.attacks.restarts import restart_seed
from lrm_tf.attacks.spec import AttackConfig, AttackFamily, AttackSpec
# Exported as spsa_attack so that `lrm_tf.attacks.spsa` stays the module.
from lrm_tf.attacks.spsa import spsa as spsa_attack
from lrm_tf.attacks.targeted import KURAKIN_SUITE, least_likely_target, random_target

__all__ = [
    "AttackConfig", "AttackFamily", "AttackSpec", "FAMILIES", "KURAKIN_SUITE", "NAME_ALIASES",
    "build_attack", "cw_loss", "fast_gradient_method", "grammar", "least_likely_target",
    "margin_loss", "parse_attack", "projected_gradient_descent", "random_target",
    "restart_seed", "spsa_attack", "xent_loss",
]
