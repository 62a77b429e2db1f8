"""Settings of evaluation: the threat model, attack-family options, and what the evaluation,
curves, analyses and audit run."""

from __future__ import annotations

import dataclasses

from lrm_tf.config.setting import (
    Config,
    ConfigError,
    at_least,
    attack_name,
    each,
    in_range,
    input_scale,
    positive,
    scale_hint,
    setting,
)
from lrm_tf.data.registry import DATASETS


def _threat_defaults(name: str) -> str:
    return ", ".join(f"{d} {getattr(info, name):.4g}" for d, info in DATASETS.items())


@dataclasses.dataclass(frozen=True)
class Threat(Config):
    """The threat model of an attack, in the model's input scale ([0, 1] by default).

    Used by evaluation, training attacks, curves, audit, transfer and the analyses. `eps` and
    `eps_step` have no library default; the command line takes them from the dataset's threat
    model (`lrm_tf.data.registry`) when not given.
    """

    HELP_GROUP = "evaluation"

    eps: float = setting(
        help="attack budget in the [0, 1] input scale (default: the dataset's: "
        + _threat_defaults("eps")
        + ")",
        kind="float",
        check=positive,
    )
    eps_step: float = setting(
        help="PGD step size (default: the dataset's: " + _threat_defaults("eps_step") + ")",
        kind="float",
        check=positive,
    )
    restarts: int = setting(
        1, "random restarts of attacks with a random start (worst case per example kept)", check=at_least(1)
    )
    attack_true_labels: bool = setting(
        True, "untargeted attacks use the true labels (else the clean predictions, as the ALP code does)"
    )
    attack_xla_step: bool = setting(
        False,
        "XLA-compile each PGD step (training and evaluation "
        "attacks); the step loop stays outside XLA (slower on the "
        "2-core development CPU: BUILD_NOTES.md)",
        group="execution",
    )
    l2_normalization: str = setting(
        "exact",
        "L2 attack steps: exact divides the gradient by its norm (every step has its full "
        "size); cleverhans floors the norm at 1e-6 as CleverHans does (steps shrink on tiny "
        "gradients; for comparison with it). BUILD_NOTES.md, L2 step normalisation",
        choices=("exact", "cleverhans"),
    )
    clip_min: float = setting(0.0, "lowest input value", flag=False)
    clip_max: float = setting(1.0, "highest input value", flag=False)

    def check(self):
        if self.eps is None or self.eps_step is None:
            raise ConfigError(
                "eps" if self.eps is None else "eps_step",
                None,
                "required (the command line takes the dataset's)",
            )
        if self.clip_min >= self.clip_max:
            raise ConfigError("clip_min", self.clip_min, "must be below {clip_max}")

    def check_norm(self, norm: str) -> None:
        """Refuses an L-inf budget or step beyond the input range (8 meant as 8/255).

        An L-inf eps of the range's width already covers every image; L2 budgets (e.g. 1.5 on
        CIFAR-10) are norms over all pixels and may exceed it.

        Args:
          norm: the attack's norm: 'linf' is checked; 'l2' and 'none' (clean) are not.

        Raises:
          ConfigError: eps or eps_step > clip_max - clip_min for a norm other than 'l2',
            naming the field and the input scale.
        """
        if norm in ("l2", "none"):
            return
        width = self.clip_max - self.clip_min
        for name in ("eps", "eps_step"):
            if getattr(self, name) > width:
                raise ConfigError(name, getattr(self, name), scale_hint(getattr(self, name), width))


@dataclasses.dataclass(frozen=True)
class SpsaOptions(Config):
    """Options of the SPSA attack family (Uesato et al. 2018), owned by `lrm_tf.attacks.spsa`."""

    HELP_GROUP = "evaluation"

    spsa_samples: int = setting(128, "SPSA perturbation samples per iteration", check=at_least(1))
    spsa_examples: int = setting(1000, "evaluate SPSA on the first N examples (0: all)", check=at_least(0))
    spsa_delta: float = setting(0.01, "finite-difference step", check=input_scale(), flag=False)
    spsa_lr: float = setting(0.01, "Adam learning rate of the perturbation", check=positive, flag=False)
    spsa_chunk_samples: int = setting(
        32, "samples per model call (memory bound)", check=at_least(1), flag=False
    )
    spsa_early_stop_loss: float | None = setting(
        None, "stop an example once its loss is below this", kind="float", flag=False
    )
    spsa_unbiased_gradient: bool = setting(
        False,
        "average both finite differences (unbiased estimate) instead of CleverHans' one-sided form",
        flag=False,
    )


@dataclasses.dataclass(frozen=True)
class EvalConfig(Config):
    """Which attacks an evaluation runs and on how many test images (`lrm_tf.eval`)."""

    HELP_GROUP = "evaluation"

    eval_attacks: tuple = setting(
        ("clean",),
        "attacks to evaluate, e.g. clean,fgsm_xent,pgd20_xent",
        kind="strs",
        check=each(attack_name),
    )
    eval_examples: int = setting(0, "evaluate on the first N test examples (0: all)", check=at_least(0))
    eval_batch_size: int = setting(500, "batch size for evaluation", check=at_least(1))
    save_adversarial: bool = setting(
        False,
        "write each attack's adversarial examples beside results.json (adversarial_<attack>.npz: "
        "x_adv, labels, correct)",
    )

    def check(self):
        if not self.eval_attacks:
            raise ConfigError("eval_attacks", "", "name at least one attack (e.g. clean)")


@dataclasses.dataclass(frozen=True)
class CurvesConfig(Config):
    """Accuracy-vs-eps/steps/restarts sweeps (Shafahi et al. tables 9-11)."""

    HELP_GROUP = "evaluation"

    curves: tuple = setting(
        (), "after evaluation: eps,steps,restarts sweeps", kind="strs", choices=("eps", "steps", "restarts")
    )
    curve_loss: str = setting("xent", "loss of the curves' PGD attacks", choices=("xent", "cw"))
    curve_steps: int = setting(100, "PGD steps of the eps and restarts sweeps", check=at_least(1))


@dataclasses.dataclass(frozen=True)
class AnalysisConfig(Config):
    """The papers' analyses (`--mode=analyze`)."""

    HELP_GROUP = "analysis"

    analyses: tuple = setting(
        ("logits", "eps_l", "landscape", "activations"),
        "which analyses to run",
        kind="strs",
        choices=("logits", "eps_l", "landscape", "activations"),
    )
    analysis_attack: str = setting(
        "apgd_ce",
        "adversarial data for the logit and activation analyses (APGD-CE sizes its own steps, so "
        "it reaches eps whatever --eps_step is)",
        check=attack_name,
    )


@dataclasses.dataclass(frozen=True)
class AuditConfig(Config):
    """The gradient-masking audit (`--mode=audit`; Athalye et al. 2018, Carlini et al. 2019;
    `lrm_tf.eval.audit`, `lrm_tf.eval.audit_verdict`)."""

    HELP_GROUP = "analysis"

    audit_steps: tuple = setting(
        (20, 1000), "PGD steps of the reference attack and of the long attack compared with it", kind="ints"
    )
    audit_restarts: int = setting(10, "random restarts compared with one start", check=at_least(2))
    audit_spsa_examples: int = setting(100, "SPSA on the first N examples (0: skip)", check=at_least(0))
    audit_spsa_iterations: int = setting(100, "SPSA iterations", check=at_least(1))
    audit_unbounded_steps: int = setting(100, "PGD steps of the unbounded-eps attack", check=at_least(1))
    audit_loss: str = setting("xent", "loss of the PGD/FGSM attacks", choices=("xent", "cw"))
    audit_square_queries: int = setting(
        1000, "queries of the gradient-free Square attack on every example (0: skip)", check=at_least(0)
    )
    audit_level: float = setting(
        0.05,
        "significance level of the paired comparisons (McNemar's exact test on the discordant pairs)",
        check=lambda v: None if 0 < v < 1 else "must be in (0, 1)",
    )
    audit_tolerance: float = setting(
        0.03,
        "smallest accuracy difference (absolute) a significant comparison needs to count as a sign "
        "of masking (an unconverged attack needs significance only)",
        check=in_range(0, 1, high_open=True),
    )
    audit_unbounded_max: float = setting(
        0.01,
        "highest accuracy the unbounded attack may leave",
        check=in_range(0, 1, high_open=True),
        flag=False,
    )

    def check(self):
        steps = self.audit_steps
        if len(steps) != 2 or not 1 <= steps[0] < steps[1]:
            raise ConfigError("audit_steps", steps, "give two whole numbers low < high, e.g. 20,1000")
