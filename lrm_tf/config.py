"""Every setting of lrm_tf, declared once: its field, default, help text and check.

Each setting is a field of one frozen dataclass below, declared with `setting(...)`. A library
user builds these objects directly (`Objective(logit_squeeze=0.5)`); a bad value raises
`ConfigError` (a `ValueError`) naming the field. The command line (`lrm_tf.cli.flags`)
generates one flag per field, with the field's name, default and help, so a setting has one
name everywhere; it keeps only the checks that span several of these objects (for example the
label-smoothing bound, which depends on the dataset's number of classes).

This module imports neither TensorFlow nor Keras. Checks that need a registry (attack names)
import it when they run.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Optional

from lrm_tf.data.registry import DATASETS

Check = Callable[[Any], Optional[str]]  # value -> None if fine, else what is wrong


class ConfigError(ValueError):
    """A bad setting: `field`, its `value`, and `reason`.

    `reason` may name other settings as `{name}`; `str()` writes them as plain names and
    `render("--")` as flags, so the library and the command line say the same thing.
    """

    def __init__(self, field: str, value: Any, reason: str):
        self.field, self.value, self.reason = field, value, reason
        super().__init__(self.render(""))

    def render(self, prefix: str = "") -> str:
        reason = re.sub(r"\{([a-z0-9_]+)\}", lambda m: prefix + m.group(1), self.reason)
        return f"{prefix}{self.field}={_show(self.value)}: {reason}"


def _show(value):
    if isinstance(value, (tuple, list)):
        return ",".join(_show(v) for v in value)
    return format(value, "g") if isinstance(value, float) else str(value)


# ----------------------------------------------------------------------------- field checks

def at_least(low) -> Check:
    return lambda v: None if v >= low else f"must be at least {low}"


def positive(v) -> Optional[str]:
    return None if v > 0 else "must be > 0"


def in_range(low, high, *, high_open=False) -> Check:
    def check(v):
        if low <= v < high if high_open else low <= v <= high:
            return None
        return f"must be in [{low}, {high}{')' if high_open else ']'}"
    return check


def each(check: Check) -> Check:
    def run(values):
        for v in values:
            problem = check(v)
            if problem:
                return f"{_show(v)}: {problem}"
        return None
    return run


def attack_name(v) -> Optional[str]:
    if not v:
        return None
    from lrm_tf.attacks.registry import parse_attack  # the attack registry owns the grammar
    try:
        parse_attack(v)
    except ValueError as e:
        return str(e)
    return None


def setting(default: Any = dataclasses.MISSING, help: str = "", *, choices=None,  # noqa: A002
            check: Optional[Check] = None, kind: Optional[str] = None, flag: bool = True):
    """A config field.

    Args:
      default: the value when not given (omit for a required field: no default in Python, and
        the flag's default is None, resolved by the command line).
      help: one line for `--help`.
      choices: allowed values (for a tuple field: allowed items).
      check: value -> None, or the reason the value is wrong.
      kind: the flag type when the default does not tell: 'float', 'int', 'str', or a list of
        them, 'floats', 'ints', 'strs' (tuple fields; the flag takes comma-separated values).
      flag: False for library-only fields (no command-line flag).
    """
    if kind is None:
        kind = {bool: "bool", int: "int", float: "float", str: "str"}.get(type(default))
    if kind is None:
        raise TypeError(f"setting(default={default!r}): give kind=")
    meta = {"help": help, "choices": tuple(choices) if choices else None, "check": check,
            "kind": kind, "flag": flag}
    return dataclasses.field(default=default, metadata=meta)


class Config:
    """Base of the config dataclasses: runs every field's check, then `check()`."""

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            kind = f.metadata.get("kind", "")
            if kind.endswith("s") and kind != "bool" and isinstance(value, (list, str)):
                value = tuple(value.split(",") if isinstance(value, str) else value)
                object.__setattr__(self, f.name, value)
            if value is None:
                continue
            problem = _type_problem(kind, value)
            choices = f.metadata.get("choices")
            if not problem and choices:
                items = value if kind.endswith("s") else (value,)
                bad = [v for v in items if v not in choices]
                if bad:
                    problem = f"choose {'from' if kind.endswith('s') else 'one of'} {', '.join(map(str, choices))}"
            check = f.metadata.get("check")
            if not problem and check:
                problem = check(value)
            if problem:
                raise ConfigError(f.name, value, problem)
        self.check()

    def check(self) -> None:
        """Checks that involve several fields of this object; raise `ConfigError`."""

    def replace(self, **changes):
        """A copy with `changes` (checked again)."""
        return dataclasses.replace(self, **changes)


def _type_problem(kind, value):
    scalar = {"bool": bool, "int": int, "float": (int, float), "str": str}
    if kind in scalar:
        ok = isinstance(value, scalar[kind]) and not (kind in ("int", "float") and isinstance(value, bool))
        return None if ok else f"expected a {kind}"
    item = scalar[kind[:-1]]
    if not all(isinstance(v, item) and not isinstance(v, bool) for v in value):
        return f"expected {'numbers' if kind != 'strs' else 'names'}"
    return None


# ============================================================================= the configs

@dataclasses.dataclass(frozen=True)
class DataConfig(Config):
    """Where the images come from (`lrm_tf.data`)."""
    dataset: str = setting("digits", f"one of {', '.join(DATASETS)} (digits: scikit-learn's 8x8 "
                           "digits, embedded, offline)")
    data_dir: str = setting("", "a TFDS data directory")
    local_data: str = setting("", "a folder with the upstream files (MNIST idx .gz, "
                              "cifar-10-batches-py/, cifar-100-python/, SVHN *_32x32.mat)")
    synthetic_data: int = setting(0, "use N random training images of the dataset's shape (and "
                                  "N/2 test images) instead of real data: dry runs and tests",
                                  check=at_least(0))
    svhn_extra: bool = setting(False, "svhn_cropped: train on train + extra (%s images, as "
                               "Summers & Dinneen do) instead of train (%s)" % (
                                   f"{DATASETS['svhn_cropped'].train_size + DATASETS['svhn_cropped'].extra_size:,}",
                                   f"{DATASETS['svhn_cropped'].train_size:,}"))

    def check(self):
        if self.dataset not in DATASETS:
            raise ConfigError("dataset", self.dataset, f"choose one of {', '.join(DATASETS)}")
        if self.svhn_extra and self.dataset != "svhn_cropped":
            raise ConfigError("svhn_extra", True, f"applies to {{dataset}}=svhn_cropped, not {self.dataset}")
        if self.data_dir and self.local_data:
            raise ConfigError("data_dir", self.data_dir, "conflicts with {local_data}: set one")


@dataclasses.dataclass(frozen=True)
class ModelConfig(Config):
    """Which network (`lrm_tf.models`); `depth` and `width` are wide_resnet's only."""
    model: str = setting("mnist_cnn", "mnist_cnn, resnet_simple, resnet18, resnet8, wide_resnet")
    depth: int = setting(28, "wide_resnet depth (28, 32, 34, ...)", check=at_least(8))
    width: int = setting(10, "wide_resnet width factor", check=at_least(1))


@dataclasses.dataclass(frozen=True)
class TrainConfig(Config):
    """Optimisation and the fit loop (`lrm_tf.training`)."""
    train_epochs: int = setting(1, "epochs to train", check=at_least(1))
    train_steps: int = setting(0, "steps to train; overrides train_epochs when > 0 (Shafahi et al. "
                               "count iterations)", check=at_least(0))
    batch_size: int = setting(128, "global batch size (split across replicas)", check=at_least(1))
    seed: int = setting(0, "seed of initialisation, data order, augmentation and attacks")
    lr_values: tuple = setting((0.1, 0.01, 0.001), "learning rates, one more than lr_boundaries",
                               kind="floats", check=each(at_least(0)))
    lr_boundaries: tuple = setting((100, 150), "where the learning rate changes (in schedule_unit)",
                                   kind="floats")
    lr_warmup: float = setting(0.0, "linear warm-up length to lr_values[0] (in schedule_unit)",
                               check=at_least(0))
    schedule_unit: str = setting("epochs", "unit of lr_boundaries and lr_warmup",
                                 choices=("epochs", "steps"))
    optimizer: str = setting("momentum", "SGD with momentum (the CIFAR/SVHN papers) or Adam "
                             "(Madry's MNIST code)", choices=("momentum", "adam"))
    momentum: float = setting(0.9, "SGD momentum (optimizer=momentum)", check=at_least(0))
    weight_decay: float = setting(2e-4, "weight decay, TF1 l2_loss convention: wd * sum(w^2) / 2",
                                  check=at_least(0))
    checkpoint_every_steps: int = setting(0, "extra checkpoints every N steps (0: every epoch only)",
                                          check=at_least(0))
    train_limit: int = setting(0, "train on the first N training examples only (0: all)",
                               check=at_least(0))
    verbose: int = setting(-1, "fit verbosity: 0 silent, 1 progress bar, 2 one line per epoch; -1 "
                           "chooses 1 on a terminal and 2 otherwise", choices=(-1, 0, 1, 2))
    jit_compile: bool = setting(False, "XLA-compile the training step (slower on the 2-core "
                                "development CPU: BUILD_NOTES.md, Performance)")
    mixed_precision: str = setting("none", "compute in half precision with float32 weights and "
                                   "logits (GPUs with tensor cores; float16 adds dynamic loss "
                                   "scaling); slower on CPUs without half-precision arithmetic",
                                   choices=("none", "mixed_float16", "mixed_bfloat16"))

    def check(self):
        if len(self.lr_values) != len(self.lr_boundaries) + 1:
            raise ConfigError("lr_values", self.lr_values,
                              f"needs one more entry than {{lr_boundaries}} (got "
                              f"{len(self.lr_values)} and {len(self.lr_boundaries)})")
        if list(self.lr_boundaries) != sorted(self.lr_boundaries):
            raise ConfigError("lr_boundaries", self.lr_boundaries, "must be increasing")


@dataclasses.dataclass(frozen=True)
class Objective(Config):
    """The training objective: which terms are active and their weights (zero or empty: off).

    Sources: label smoothing (Szegedy et al. 2016; Shafahi et al. 2019 eq. 3), logit squeezing
    (Kannan et al. 2018; Shafahi et al. 2019 eq. 5), logit similarity (Summers & Dinneen's
    poster), Gaussian noise, clean and adversarial logit pairing (Kannan et al. 2018), PGD
    adversarial training (Madry et al. 2018; M-PGD with adv_alpha), the decoupled pairing and
    LRM (Summers & Dinneen 2019, sec. 4), mixup and VH-mixup. The terms themselves are the
    table in `lrm_tf.objectives.terms`; the training attack's eps comes from the `Threat`.
    """
    label_smoothing: float = setting(0.0, "label smoothing coefficient: s (lrm form) or alpha "
                                     "(shafahi form)", check=in_range(0, 1))
    label_smoothing_form: str = setting("lrm", "lrm: 1-s on the true class, s/(C-1) elsewhere; "
                                        "shafahi: y - alpha (y - 1/C) (Shafahi et al. eq. 3)",
                                        choices=("lrm", "shafahi"))
    logit_squeeze: float = setting(0.0, "logit squeezing coefficient beta", check=at_least(0))
    logit_squeeze_form: str = setting("batch", "example: mean_i ||z_i|| (Kannan et al.); batch: "
                                      "Frobenius norm of the batch logits (Shafahi et al. eq. 5)",
                                      choices=("example", "batch"))
    logit_squeeze_scale: str = setting("per_example", "batch form: beta/|b| ||Z||_F (the poster; "
                                       "matches the published betas with a mean cross-entropy) or "
                                       "beta ||Z||_F (Shafahi eq. 5 read literally)",
                                       choices=("per_example", "batch"))
    logit_similarity: float = setting(0.0, "logit similarity coefficient beta' of "
                                      "beta'/|b| ||Z - gamma||_F (Summers & Dinneen's poster)",
                                      check=at_least(0))
    logit_similarity_gamma: float = setting(1.0, "logit similarity target gamma")
    noise_sigma: float = setting(0.0, "Gaussian noise std added to training images, in the [0, 1] "
                                 "input scale like eps", check=at_least(0))
    noise_clip: bool = setting(True, "clip noisy training images to the input range")
    clean_pairing: float = setting(0.0, "clean logit pairing weight lambda (Kannan et al. sec. 4.2)",
                                   check=at_least(0))
    pairing_distance: str = setting("mean_squared", "distance of clean and adversarial logit "
                                    "pairing: mean squared difference (the ALP code), squared L2, "
                                    "or L2", choices=("mean_squared", "squared_l2", "l2"))
    adv_train: str = setting("", "attack used during training, e.g. pgd7_xent (empty: none)",
                             check=attack_name)
    adv_train_eps: Optional[float] = setting(None, "eps of the training attack (default: eps)",
                                             kind="float", check=positive)
    adv_train_eps_step: Optional[float] = setting(None, "step of the training attack (default: "
                                                  "eps_step)", kind="float", check=positive)
    adv_alpha: float = setting(0.5, "weight of the clean cross-entropy in adversarial training "
                               "(0.5: Kannan et al.'s M-PGD, 0: Madry et al.)", check=in_range(0, 1))
    alp_weight: float = setting(0.0, "adversarial logit pairing weight lambda (Kannan et al. eq. 3)",
                                check=at_least(0))
    pairing_beta: float = setting(0.0, "beta of the logit-norm penalty of the decoupled pairing "
                                  "(Summers & Dinneen sec. 4.1)", check=at_least(0))
    pairing_ratio: float = setting(0.0, "ratio J_adv : c*h of the decoupled pairing (> 0 turns it "
                                   "on; Summers & Dinneen sec. 4.1)", check=at_least(0))
    pairing_h_direction: str = setting("clean_to_adv", "decoupled pairing h: cross-entropy with "
                                       "the clean softmax as target, or the reverse",
                                       choices=("clean_to_adv", "adv_to_clean"))
    mixup: str = setting("none", "input mixing: mixup (Zhang et al.) or VH-mixup (Summers & "
                         "Dinneen)", choices=("none", "mixup", "vh_mixup"))
    mixup_alpha: float = setting(1.0, "Beta(alpha, alpha) of the mixing coefficient",
                                 check=at_least(0))
    mix_before_attack: bool = setting(True, "mix inputs before generating training attacks (else "
                                      "attack clean inputs and mix the adversarial ones)")
    separate_bn_batches: bool = setting(False, "clean and adversarial forward passes separately "
                                        "(batch-norm statistics per kind) instead of one "
                                        "concatenated pass")
    attack_bn_training: bool = setting(False, "batch norm in training mode while generating "
                                       "training attacks (default: inference mode)")

    def check(self):
        if self.label_smoothing_form == "lrm" and self.label_smoothing >= 1:
            raise ConfigError("label_smoothing", self.label_smoothing,
                              "the lrm form needs s < 1 (at most 1 - 1/C)")
        if self.mixup != "none" and self.mixup_alpha <= 0:
            raise ConfigError("mixup_alpha", self.mixup_alpha, f"must be > 0 with {{mixup}}={self.mixup}")
        for name in ("alp_weight", "pairing_ratio"):
            if getattr(self, name) and not self.adv_train:
                raise ConfigError(name, getattr(self, name), "pairs clean and adversarial logits: "
                                  "set {adv_train} (e.g. pgd7_xent)")
        if self.pairing_beta and not self.pairing_ratio:
            raise ConfigError("pairing_beta", self.pairing_beta,
                              "is part of the decoupled pairing: set {pairing_ratio} > 0")

    @property
    def adversarial(self) -> bool:
        return bool(self.adv_train)


def _threat_defaults(name: str) -> str:
    return ", ".join(f"{d} {getattr(info, name):.4g}" for d, info in DATASETS.items())


@dataclasses.dataclass(frozen=True)
class Threat(Config):
    """The threat model of an attack, in the model's input scale ([0, 1] by default).

    Used by evaluation, training attacks, curves, audit, transfer and the analyses. `eps` and
    `eps_step` have no library default; the command line takes them from the dataset's threat
    model (`lrm_tf.data.registry`) when not given.
    """
    eps: float = setting(help="attack budget in the [0, 1] input scale (default: the dataset's: "
                         + _threat_defaults("eps") + ")", kind="float", check=positive)
    eps_step: float = setting(help="PGD step size (default: the dataset's: "
                              + _threat_defaults("eps_step") + ")", kind="float", check=positive)
    restarts: int = setting(1, "random restarts of attacks with a random start (worst case per "
                            "example kept)", check=at_least(1))
    attack_true_labels: bool = setting(True, "untargeted attacks use the true labels (else the "
                                       "clean predictions, as the ALP code does)")
    attack_xla_step: bool = setting(False, "XLA-compile each PGD step (training and evaluation "
                                    "attacks); the step loop stays outside XLA (slower on the "
                                    "2-core development CPU: BUILD_NOTES.md)")
    clip_min: float = setting(0.0, "lowest input value", flag=False)
    clip_max: float = setting(1.0, "highest input value", flag=False)

    def check(self):
        if self.eps is None or self.eps_step is None:
            raise ConfigError("eps" if self.eps is None else "eps_step", None,
                              "required (the command line takes the dataset's)")
        if self.clip_min >= self.clip_max:
            raise ConfigError("clip_min", self.clip_min, "must be below {clip_max}")


@dataclasses.dataclass(frozen=True)
class SpsaOptions(Config):
    """Options of the SPSA attack family (Uesato et al. 2018), owned by `lrm_tf.attacks.spsa`."""
    spsa_samples: int = setting(128, "SPSA perturbation samples per iteration", check=at_least(1))
    spsa_examples: int = setting(1000, "evaluate SPSA on the first N examples (0: all)",
                                 check=at_least(0))
    spsa_delta: float = setting(0.01, "finite-difference step", check=positive, flag=False)
    spsa_lr: float = setting(0.01, "Adam learning rate of the perturbation", check=positive,
                             flag=False)
    spsa_chunk_samples: int = setting(32, "samples per model call (memory bound)",
                                      check=at_least(1), flag=False)
    spsa_early_stop_loss: Optional[float] = setting(None, "stop an example once its loss is below "
                                                    "this", kind="float", flag=False)
    spsa_unbiased_gradient: bool = setting(False, "average both finite differences (unbiased "
                                           "estimate) instead of CleverHans' one-sided form",
                                           flag=False)


@dataclasses.dataclass(frozen=True)
class EvalConfig(Config):
    """Which attacks an evaluation runs and on how many test images (`lrm_tf.eval`)."""
    eval_attacks: tuple = setting(("clean",), "attacks to evaluate, e.g. clean,fgsm_xent,pgd20_xent",
                                  kind="strs", check=each(attack_name))
    eval_examples: int = setting(0, "evaluate on the first N test examples (0: all)",
                                 check=at_least(0))
    eval_batch_size: int = setting(500, "batch size for evaluation", check=at_least(1))

    def check(self):
        if not self.eval_attacks:
            raise ConfigError("eval_attacks", "", "name at least one attack (e.g. clean)")


@dataclasses.dataclass(frozen=True)
class CurvesConfig(Config):
    """Accuracy-vs-eps/steps/restarts sweeps (Shafahi et al. tables 9-11)."""
    curves: tuple = setting((), "after evaluation: eps,steps,restarts sweeps", kind="strs",
                            choices=("eps", "steps", "restarts"))
    curve_loss: str = setting("xent", "loss of the curves' PGD attacks", choices=("xent", "cw"))
    curve_steps: int = setting(100, "PGD steps of the eps and restarts sweeps", check=at_least(1))


@dataclasses.dataclass(frozen=True)
class AnalysisConfig(Config):
    """The papers' analyses (`--mode=analyze`)."""
    analyses: tuple = setting(("logits", "eps_l", "landscape", "activations"), "which analyses to "
                              "run", kind="strs", choices=("logits", "eps_l", "landscape", "activations"))
    analysis_attack: str = setting("pgd10_xent", "adversarial data for the logit and activation "
                                   "analyses", check=attack_name)


@dataclasses.dataclass(frozen=True)
class AuditConfig(Config):
    """The gradient-masking audit (`--mode=audit`; Athalye et al. 2018, Carlini et al. 2019)."""
    audit_steps: tuple = setting((20, 1000), "PGD steps of the reference attack and of the long "
                                 "attack compared with it", kind="ints")
    audit_restarts: int = setting(10, "random restarts compared with one start", check=at_least(2))
    audit_spsa_examples: int = setting(100, "SPSA on the first N examples (0: skip)",
                                       check=at_least(0))
    audit_spsa_iterations: int = setting(100, "SPSA iterations", check=at_least(1))
    audit_unbounded_steps: int = setting(100, "PGD steps of the unbounded-eps attack",
                                         check=at_least(1))
    audit_loss: str = setting("xent", "loss of the PGD/FGSM attacks", choices=("xent", "cw"))
    audit_tolerance: float = setting(0.03, "accuracy drop (absolute) beyond which a stronger "
                                     "attack counts as a sign of masking",
                                     check=in_range(0, 1, high_open=True))
    audit_unbounded_max: float = setting(0.01, "highest accuracy the unbounded attack may leave",
                                         check=in_range(0, 1, high_open=True), flag=False)

    def check(self):
        steps = self.audit_steps
        if len(steps) != 2 or not 1 <= steps[0] < steps[1]:
            raise ConfigError("audit_steps", steps, "give two whole numbers low < high, e.g. 20,1000")


@dataclasses.dataclass(frozen=True)
class DistributeConfig(Config):
    """Devices and tf.distribute strategy (`lrm_tf.training.distribute`)."""
    strategy: str = setting("default", "one device, several local devices, several hosts (cluster "
                            "from TF_CONFIG), or TPU",
                            choices=("default", "mirrored", "multiworker", "tpu"))
    num_gpus: int = setting(0, "GPUs for strategy=mirrored (0: all visible devices)",
                            check=at_least(0))
    devices: tuple = setting((), "explicit device list for strategy=mirrored, e.g. /gpu:0,/gpu:1",
                             kind="strs")
    cpu_replicas: int = setting(0, "split the CPU into N logical devices and mirror over them "
                                "(testing multi-replica code without GPUs)", check=at_least(0))
    tpu: str = setting("", "TPU name or address for strategy=tpu")

    def check(self):
        if self.cpu_replicas > 1 and self.strategy != "mirrored":
            raise ConfigError("cpu_replicas", self.cpu_replicas, "needs {strategy}=mirrored")

    @property
    def replicas(self) -> int:
        """Replicas the flags ask for (1 when the strategy decides)."""
        return self.cpu_replicas or len(self.devices) or self.num_gpus or 1


# The configs whose fields are command-line flags, in the order `--help` lists them.
FLAG_CONFIGS = (DataConfig, ModelConfig, TrainConfig, Objective, Threat, SpsaOptions, EvalConfig,
                CurvesConfig, AnalysisConfig, AuditConfig, DistributeConfig)
