"""The data types of the attack registry: a parsed attack name and the descriptor each attack
file exports as `FAMILY`.

The threat model shared by every attack is `lrm_tf.config.Threat`; options that only one
family reads (SPSA's sample count, R+FGSM's random step) are that family's options object.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import tensorflow as tf

from lrm_tf.config import Threat

# run(x, labels, seed) -> x_adv, with `labels` already the true/predicted labels (untargeted)
# or the target classes (targeted).
FamilyRun = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """A parsed attack name (`lrm_tf.attacks.parse_attack`).

    Internal code derives variants with `spec.replace(steps=k)` (`dataclasses.replace` that
    also renames the variant) rather than writing a new name and parsing it again.

    Attributes:
      family: registry key ('clean', 'fgsm', 'pgd', 'spsa').
      steps: iterations; 1 for single-step attacks, 0 for clean.
      loss: 'xent' | 'cw' | 'margin' | 'none'.
      norm: 'linf' | 'l2' | 'none'.
      rand_init: random start (PGD, SPSA) or random step (R+FGSM, Tramèr et al. 2018).
      target: 'none' | 'll' (least-likely class) | 'rand' (random wrong class), Kurakin et
        al. 2017.
      name: the name as written (`parse_attack`) or, for a variant made with `replace`,
        the canonical name of the new fields (`lrm_tf.attacks.format_attack`).
    """

    family: str
    steps: int
    loss: str
    norm: str
    rand_init: bool
    target: str
    name: str

    @property
    def targeted(self) -> bool:
        return self.target != "none"

    def replace(self, **changes) -> AttackSpec:
        """A variant with `changes` (e.g. `steps=1000`), named after its new fields.

        Args:
          **changes: new values of the fields; `name` only to force a name.

        Returns:
          The new AttackSpec; its `name` is `format_attack` of the new fields unless given.

        Raises:
          ValueError: the fields make no valid attack (e.g. steps=0 for PGD).
        """
        from lrm_tf.attacks.registry import format_attack  # the registry owns the grammar

        variant = dataclasses.replace(self, **changes)
        if "name" in changes:
            return variant
        return dataclasses.replace(variant, name=format_attack(variant))


@dataclasses.dataclass(frozen=True)
class AttackFamily:
    """What an attack file registers (`FAMILY = AttackFamily(...)`).

    Attributes:
      name: the registry key and the name prefix.
      build: `build(spec, logits_fn, threat, options) -> run(x, labels, seed)`; `options` is
        an instance of `options` (the family's defaults when the caller gave none), or None
        for a family without options.
      multi_step: the name carries a step count (pgd20_xent) or must not (fgsm_xent).
      losses: losses allowed in the name's objective slot; empty means the slot is absent and
        the family always uses `fixed_loss`.
      fixed_loss: the loss of a family whose name has no loss slot.
      norms: allowed norms, the first is the default.
      targetable: whether `_ll` / `_rand` objectives are allowed.
      default_rand_init: the random start of the family's own name (pgd: yes, fgsm: no).
      options: the family's options class (built with no arguments for the defaults), or
        None when the threat model says everything.
      examples: `examples(options) -> N`: an expensive family evaluates only the first N
        examples of a test set (0: all). None: all.
      default_steps: a multi-step family whose reference has a standard iteration count (APGD
        100, Square 5000) may be named without one (`apgd_ce` = `apgd100_ce`); 0: the count
        is required.
    """

    name: str
    build: Callable[[AttackSpec, Callable, Threat, Any], FamilyRun]
    multi_step: bool
    losses: tuple[str, ...] = ()
    fixed_loss: str = "none"
    norms: tuple[str, ...] = ("linf",)
    targetable: bool = False
    default_rand_init: bool = False
    options: type | None = None
    examples: Callable[[Any], int] | None = None
    default_steps: int = 0
