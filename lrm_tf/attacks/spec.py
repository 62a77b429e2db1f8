"""The data types of the attack registry: a parsed attack name, the threat-model parameters,
and the descriptor each attack file exports as `FAMILY`."""
from __future__ import annotations

import dataclasses
from typing import Callable, Optional

import tensorflow as tf

# run(x, labels, seed) -> x_adv, with `labels` already the true/predicted labels (untargeted)
# or the target classes (targeted).
FamilyRun = Callable[[tf.Tensor, tf.Tensor, tf.Tensor], tf.Tensor]


@dataclasses.dataclass(frozen=True)
class AttackSpec:
    """A parsed attack name.

    family: registry key ('clean', 'fgsm', 'pgd', 'spsa', ...); steps: iterations (1 for
    single-step attacks, 0 for clean); loss: 'xent' | 'cw' | 'margin' | 'none'; norm:
    'linf' | 'l2' | 'none'; rand_init: random start (or random step for FGSM);
    target: 'none' | 'll' | 'rand'; name: the name as written.
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


@dataclasses.dataclass(frozen=True)
class AttackConfig:
    """Threat model and attack hyper-parameters shared by all families (see `build_attack`)."""
    eps: float
    eps_step: float
    clip_min: Optional[float] = 0.0
    clip_max: Optional[float] = 1.0
    restarts: int = 1
    use_true_labels: bool = True
    spsa_samples: int = 128
    spsa_delta: float = 0.01
    spsa_lr: float = 0.01
    spsa_chunk_samples: int = 32
    spsa_early_stop_loss: Optional[float] = None
    spsa_unbiased_gradient: bool = False
    rand_step_alpha: Optional[float] = None
    jit_compile_step: bool = False


@dataclasses.dataclass(frozen=True)
class AttackFamily:
    """What an attack file registers.

    build(spec, logits_fn, config) -> run(x, labels, seed).
    multi_step: the name carries a step count (pgd20_xent) or must not (fgsm_xent).
    losses: losses allowed in the name's objective slot; empty means the slot is absent and
      the family always uses `fixed_loss`.
    norms: allowed norms, the first is the default.
    targetable: whether `_ll` / `_rand` objectives are allowed.
    default_rand_init: the random start of the family's own name (pgd: yes, fgsm: no).
    """
    name: str
    build: Callable[[AttackSpec, Callable, AttackConfig], FamilyRun]
    multi_step: bool
    losses: tuple[str, ...] = ()
    fixed_loss: str = "none"
    norms: tuple[str, ...] = ("linf",)
    targetable: bool = False
    default_rand_init: bool = False
