"""Settings of training: the data, the network, optimisation, the objective and the devices."""

from __future__ import annotations

import dataclasses

from lrm_tf.config.setting import (
    Config,
    ConfigError,
    at_least,
    attack_name,
    attack_norm,
    each,
    in_range,
    input_scale,
    positive,
    scale_hint,
    setting,
)
from lrm_tf.data.registry import DATASETS, recipe_of

_SVHN = DATASETS["svhn_cropped"].train_size
_SVHN_EXTRA = _SVHN + DATASETS["svhn_cropped"].extra_size


@dataclasses.dataclass(frozen=True)
class DataConfig(Config):
    """Where the images come from (`lrm_tf.data`)."""

    HELP_GROUP = "data"

    dataset: str = setting(
        "digits", f"one of {', '.join(DATASETS)} (digits: scikit-learn's 8x8 digits, embedded, offline)"
    )
    data_dir: str = setting("", "a TFDS data directory")
    local_data: str = setting(
        "",
        "a folder with the upstream files (MNIST idx .gz, "
        "cifar-10-batches-py/, cifar-100-python/, SVHN *_32x32.mat)",
    )
    synthetic_data: int = setting(
        0,
        "use N random training images of the dataset's shape (and "
        "N/2 test images) instead of real data: dry runs and tests",
        check=at_least(0),
    )
    svhn_extra: bool = setting(
        False,
        f"svhn_cropped: train on train + extra ({_SVHN_EXTRA:,} "
        f"images, as Summers & Dinneen do) instead of train ({_SVHN:,})",
    )

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

    HELP_GROUP = "model"

    model: str = setting("mnist_cnn", "mnist_cnn, resnet_simple, resnet18, resnet8, wide_resnet")
    depth: int = setting(28, "wide_resnet depth (28, 32, 34, ...)", check=at_least(8))
    width: int = setting(10, "wide_resnet width factor", check=at_least(1))


@dataclasses.dataclass(frozen=True)
class TrainConfig(Config):
    """Optimisation and the fit loop (`lrm_tf.training`)."""

    HELP_GROUP = "optimisation"

    train_epochs: int = setting(1, "epochs to train", check=at_least(1))
    train_steps: int = setting(
        0,
        "steps to train; overrides train_epochs when > 0 (Shafahi et al. count iterations)",
        check=at_least(0),
    )
    batch_size: int = setting(128, "global batch size (split across replicas)", check=at_least(1))
    seed: int = setting(0, "seed of initialisation, data order, augmentation and attacks", group="run")
    lr_values: tuple = setting(
        (0.1, 0.01, 0.001),
        "learning rates, one more than lr_boundaries",
        kind="floats",
        check=each(at_least(0)),
    )
    lr_boundaries: tuple = setting(
        (100, 150), "where the learning rate changes (in schedule_unit)", kind="floats"
    )
    lr_warmup: float = setting(
        0.0, "linear warm-up length to lr_values[0] (in schedule_unit)", check=at_least(0)
    )
    schedule_unit: str = setting("epochs", "unit of lr_boundaries and lr_warmup", choices=("epochs", "steps"))
    optimizer: str = setting(
        "momentum",
        "SGD with momentum (the CIFAR/SVHN papers) or Adam (Madry's MNIST code)",
        choices=("momentum", "adam"),
    )
    momentum: float = setting(0.9, "SGD momentum (optimizer=momentum)", check=at_least(0))
    weight_decay: float = setting(
        2e-4,
        "weight decay, TF1 l2_loss convention: wd * sum(w^2) / 2",
        check=at_least(0),
        term="weight decay (Madry et al.'s TF1 code): wd * sum(w^2) / 2 over conv and dense kernels",
    )
    checkpoint_every_steps: int = setting(
        0, "extra checkpoints every N steps (0: every epoch only)", check=at_least(0), group="execution"
    )
    train_limit: int = setting(0, "train on the first N training examples only (0: all)", check=at_least(0))
    verbose: int = setting(
        -1,
        "training output: 0 silent; 1 each epoch's progress (step, loss, accuracy, objective "
        "terms, elapsed, time left: one updating line on a terminal, in a file a line per tenth "
        "of an epoch and every 30 s) and a line per epoch; 2 the line per epoch only; -1 as 1",
        choices=(-1, 0, 1, 2),
        group="execution",
    )
    jit_compile: bool = setting(
        False,
        "XLA-compile the training step (slower on the 2-core development CPU: BUILD_NOTES.md, Performance)",
        group="execution",
    )
    mixed_precision: str = setting(
        "none",
        "compute in half precision with float32 weights and "
        "logits (GPUs with tensor cores; float16 adds dynamic loss "
        "scaling); slower on CPUs without half-precision arithmetic. Modes that load runs: the "
        "precision their model.keras computes in (none: float32); left out, as trained",
        choices=("none", "mixed_float16", "mixed_bfloat16"),
        group="execution",
    )
    stop_if_not_learning: bool = setting(
        True,
        "stop before evaluation and export (exit status 5) when training ends at chance accuracy, or "
        "with a loss mostly weight decay and not falling (real data, runs of 200+ steps after warm-up)",
    )

    @classmethod
    def for_dataset(cls, dataset: str, **changes) -> TrainConfig:
        """The papers' recipe of `dataset` (`lrm_tf.data.registry.RECIPES`) with `changes`.

        `TrainConfig(...)` itself has the library defaults (LRM's CIFAR schedule without
        warm-up); this is what the command line trains with when no optimiser flag is given.

        Args:
          dataset: a dataset of the registry; one without a recipe (digits) gives the defaults.
          **changes: fields that win over the recipe.

        Raises:
          ValueError: unknown dataset. ConfigError: a bad value in `changes`.
        """
        recipe = recipe_of(dataset)
        return cls(**{**(recipe.settings if recipe else {}), **changes})

    def check(self):
        if len(self.lr_values) != len(self.lr_boundaries) + 1:
            raise ConfigError(
                "lr_values",
                self.lr_values,
                f"needs one more entry than {{lr_boundaries}} (got "
                f"{len(self.lr_values)} and {len(self.lr_boundaries)})",
            )
        if list(self.lr_boundaries) != sorted(self.lr_boundaries):
            raise ConfigError("lr_boundaries", self.lr_boundaries, "must be increasing")


@dataclasses.dataclass(frozen=True)
class Objective(Config):
    """The training objective: which terms are active and their weights (zero or empty: off).

    Sources: label smoothing (Szegedy et al. 2016; Shafahi et al. 2019 eq. 3), logit squeezing
    (Kannan et al. 2018; Shafahi et al. 2019 eq. 5), logit similarity (Shafahi et al.'s
    poster), Gaussian noise, clean and adversarial logit pairing (Kannan et al. 2018), PGD
    adversarial training (Madry et al. 2018; M-PGD with adv_alpha), the decoupled pairing and
    LRM (Summers & Dinneen 2019, sec. 4), mixup and VH-mixup. The terms themselves are the
    table in `lrm_tf.objectives.terms`; the training attack's eps comes from the `Threat`.
    """

    HELP_GROUP = "objective"

    label_smoothing: float = setting(
        0.0,
        "label smoothing coefficient: s (lrm form) or alpha (shafahi form)",
        check=in_range(0, 1),
        term="label smoothing (Szegedy et al. 2016; Shafahi et al. 2019 eq. 3): softened one-hot targets",
    )
    label_smoothing_form: str = setting(
        "lrm",
        "lrm: 1-s on the true class, s/(C-1) elsewhere; shafahi: y - alpha (y - 1/C) (Shafahi et al. eq. 3)",
        choices=("lrm", "shafahi"),
    )
    logit_squeeze: float = setting(
        0.0,
        "logit squeezing coefficient beta",
        check=at_least(0),
        term="logit squeezing (Kannan et al. 2018; Shafahi et al. 2019 eq. 5): a penalty on the logits' norm",
    )
    logit_squeeze_form: str = setting(
        "batch",
        "example: mean_i ||z_i|| (Kannan et al.); batch: "
        "Frobenius norm of the batch logits (Shafahi et al. eq. 5)",
        choices=("example", "batch"),
    )
    logit_squeeze_scale: str = setting(
        "per_example",
        "batch form: beta/|b| ||Z||_F (Shafahi et al.'s poster; "
        "matches the published betas with a mean cross-entropy) or "
        "beta ||Z||_F (Shafahi eq. 5 read literally)",
        choices=("per_example", "batch"),
    )
    logit_similarity: float = setting(
        0.0,
        "logit similarity coefficient beta' of beta'/|b| ||Z - gamma||_F (Shafahi et al.'s poster)",
        check=at_least(0),
        term="logit similarity (Shafahi et al. 2019, poster): pulls the batch's logits towards gamma",
    )
    logit_similarity_gamma: float = setting(1.0, "logit similarity target gamma")
    noise_sigma: float = setting(
        0.0,
        "Gaussian noise std added to training images, in the [0, 1] input scale like eps",
        check=input_scale(allow_zero=True),
        term="Gaussian noise (Shafahi et al. 2019, with logit squeezing and label smoothing): noisy "
        "training images",
    )
    noise_clip: bool = setting(True, "clip noisy training images to the input range")
    clean_pairing: float = setting(
        0.0,
        "clean logit pairing weight lambda (Kannan et al. sec. 4.2)",
        check=at_least(0),
        term="clean logit pairing (Kannan et al. 2018, sec. 4.2): pairs the logits of two clean images",
    )
    pairing_distance: str = setting(
        "mean_squared",
        "distance of clean and adversarial logit "
        "pairing: mean squared difference (the ALP code), squared L2, "
        "or L2",
        choices=("mean_squared", "squared_l2", "l2"),
    )
    adv_train: str = setting(
        "",
        "attack used during training, e.g. pgd7_xent (empty: none)",
        check=attack_name,
        term="adversarial training (Madry et al. 2018; M-PGD of Kannan et al. 2018 with --adv_alpha): "
        "cross-entropy on attacked images",
    )
    adv_train_eps: float | None = setting(
        None, "eps of the training attack (default: eps)", kind="float", check=positive
    )
    adv_train_eps_step: float | None = setting(
        None, "step of the training attack (default: eps_step)", kind="float", check=positive
    )
    adv_alpha: float = setting(
        0.5,
        "weight of the clean cross-entropy in adversarial training "
        "(0.5: Kannan et al.'s M-PGD, 0: Madry et al.)",
        check=in_range(0, 1),
    )
    alp_weight: float = setting(
        0.0,
        "adversarial logit pairing weight lambda (Kannan et al. eq. 3)",
        check=at_least(0),
        term="adversarial logit pairing, ALP (Kannan et al. 2018, eq. 3): pairs clean and adversarial logits",
    )
    pairing_beta: float = setting(
        0.0,
        "beta of the logit-norm penalty of the decoupled pairing (Summers & Dinneen sec. 4.1)",
        check=at_least(0),
    )
    pairing_ratio: float = setting(
        0.0,
        "ratio J_adv : c*h of the decoupled pairing (> 0 turns it on; Summers & Dinneen sec. 4.1)",
        check=at_least(0),
        term="decoupled pairing of LRM (Summers & Dinneen 2019, sec. 4.1): a cross-entropy between the "
        "clean and adversarial softmax with --pairing_beta's logit-norm penalty",
    )
    pairing_h_direction: str = setting(
        "clean_to_adv",
        "decoupled pairing h: cross-entropy with the clean softmax as target, or the reverse",
        choices=("clean_to_adv", "adv_to_clean"),
    )
    mixup: str = setting(
        "none",
        "input mixing: mixup (Zhang et al.) or VH-mixup (Summers & Dinneen)",
        choices=("none", "mixup", "vh_mixup"),
        term="mixup (Zhang et al. 2018) or VH-mixup (Summers & Dinneen 2019): training on mixed images "
        "and labels",
    )
    mixup_alpha: float = setting(1.0, "Beta(alpha, alpha) of the mixing coefficient", check=at_least(0))
    mix_before_attack: bool = setting(
        True,
        "mix inputs before generating training attacks (else "
        "attack clean inputs and mix the adversarial ones)",
    )
    separate_bn_batches: bool = setting(
        False,
        "clean and adversarial forward passes separately "
        "(batch-norm statistics per kind) instead of one "
        "concatenated pass",
    )
    attack_bn_training: bool = setting(
        False, "batch norm in training mode while generating training attacks (default: inference mode)"
    )

    def check(self):
        if attack_norm(self.adv_train) != "l2":  # L2 budgets are norms over all pixels
            for name in ("adv_train_eps", "adv_train_eps_step"):
                value = getattr(self, name)
                if value is not None and value > 1:
                    raise ConfigError(name, value, scale_hint(value, 1.0))
        if self.label_smoothing_form == "lrm" and self.label_smoothing >= 1:
            raise ConfigError(
                "label_smoothing", self.label_smoothing, "the lrm form needs s < 1 (at most 1 - 1/C)"
            )
        if self.mixup != "none" and self.mixup_alpha <= 0:
            raise ConfigError("mixup_alpha", self.mixup_alpha, f"must be > 0 with {{mixup}}={self.mixup}")
        for name in ("alp_weight", "pairing_ratio"):
            if getattr(self, name) and not self.adv_train:
                raise ConfigError(
                    name,
                    getattr(self, name),
                    "pairs clean and adversarial logits: set {adv_train} (e.g. pgd7_xent)",
                )
        if self.pairing_beta and not self.pairing_ratio:
            raise ConfigError(
                "pairing_beta", self.pairing_beta, "is part of the decoupled pairing: set {pairing_ratio} > 0"
            )

    @property
    def adversarial(self) -> bool:
        return bool(self.adv_train)


@dataclasses.dataclass(frozen=True)
class DistributeConfig(Config):
    """Devices and tf.distribute strategy (`lrm_tf.training.distribute`)."""

    HELP_GROUP = "execution"

    strategy: str = setting(
        "default",
        "one device, several local devices, several hosts (cluster from TF_CONFIG), or TPU",
        choices=("default", "mirrored", "multiworker", "tpu"),
    )
    num_gpus: int = setting(0, "GPUs for strategy=mirrored (0: all visible devices)", check=at_least(0))
    devices: tuple = setting(
        (), "explicit device list for strategy=mirrored, e.g. /gpu:0,/gpu:1", kind="strs"
    )
    cpu_replicas: int = setting(
        0,
        "split the CPU into N logical devices and mirror over them (testing multi-replica code without GPUs)",
        check=at_least(0),
    )
    tpu: str = setting("", "TPU name or address for strategy=tpu")

    def check(self):
        if self.cpu_replicas > 1 and self.strategy != "mirrored":
            raise ConfigError("cpu_replicas", self.cpu_replicas, "needs {strategy}=mirrored")

    @property
    def replicas(self) -> int:
        """Replicas the flags ask for (1 when the strategy decides)."""
        return self.cpu_replicas or len(self.devices) or self.num_gpus or 1


# The configs whose fields are command-line flags, in the order `--help` lists them.


def steps_plan(num_train: int, cfg: TrainConfig):
    """(steps per epoch, total steps) of a run: whole batches only; train_steps > 0 wins.

    Args:
      num_train: training examples (after train_limit).
      cfg: batch_size, train_epochs, train_steps.

    Returns:
      (num_train // batch_size, train_steps or train_epochs * steps per epoch).

    Raises:
      ValueError: the batch is larger than the training set.
    """
    steps_per_epoch = num_train // cfg.batch_size
    if steps_per_epoch < 1:
        raise ValueError(f"batch_size {cfg.batch_size} is larger than the {num_train} training examples")
    total = cfg.train_steps if cfg.train_steps > 0 else cfg.train_epochs * steps_per_epoch
    return steps_per_epoch, total
