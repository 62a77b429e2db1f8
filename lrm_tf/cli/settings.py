"""The config objects of one invocation, built from the flags once (`from_flags`)."""

from __future__ import annotations

import dataclasses
import functools

from lrm_tf import config
from lrm_tf.cli import checks, sources
from lrm_tf.cli.flags import FLAGS, UsageError, build


@dataclasses.dataclass(frozen=True)
class Settings:
    """Everything the modes read; the training attack's threat has the adv_train_* overrides."""

    data: config.DataConfig
    model: config.ModelConfig
    train: config.TrainConfig
    objective: config.Objective
    threat: config.Threat
    train_threat: config.Threat
    spsa: config.SpsaOptions
    eval: config.EvalConfig
    curves: config.CurvesConfig
    analysis: config.AnalysisConfig
    audit: config.AuditConfig
    distribute: config.DistributeConfig
    # The precision the modes that load a model.keras set it to: --mixed_precision when given,
    # else None (as it was trained; the flag's value then is the run's, for the record).
    load_precision: str | None = None

    def strategy(self):
        return strategy_for(self.distribute)

    def load_data(self):
        from lrm_tf import data

        d = self.data
        if d.synthetic_data:
            n = d.synthetic_data
            return data.synthetic_arrays(d.dataset, n, max(n // 2, 1), self.train.seed)
        return data.load_arrays(d.dataset, d.data_dir or None, d.local_data or None, svhn_extra=d.svhn_extra)


@functools.lru_cache(maxsize=1)
def strategy_for(distribute: config.DistributeConfig):
    """The tf.distribute strategy of `distribute` (one per process: TensorFlow allows one)."""
    from lrm_tf.training.distribute import make_strategy

    devices = list(distribute.devices) or (
        [f"/cpu:{i}" for i in range(distribute.cpu_replicas)] if distribute.cpu_replicas > 1 else []
    )
    return make_strategy(distribute.strategy, devices, distribute.num_gpus, distribute.tpu)


def clear_cache() -> None:
    strategy_for.cache_clear()


# What a run's flags.json says about its model and data; modes that read a run take these from
# it unless the command line gives them.
RUN_SETTINGS = (
    "dataset",
    "data_dir",
    "local_data",
    "synthetic_data",
    "svhn_extra",
    "model",
    "depth",
    "width",
    "mixed_precision",
)
_READS_A_RUN = ("eval", "transfer", "analyze", "audit", "export")


def source_run() -> str | None:
    """The run directory the mode reads (its flags.json exists), or None."""
    from lrm_tf.report.rundir import is_run_dir

    if FLAGS.mode not in _READS_A_RUN:
        return None
    if FLAGS.mode == "transfer":
        paths = checks.load_paths()
    elif FLAGS.mode == "export":
        paths = [FLAGS.model_dir]
    else:
        paths = [FLAGS.load_from or FLAGS.model_dir]
    return next((p for p in paths if is_run_dir(p)), None)


def inherit_run_settings() -> None:
    """Sets the `RUN_SETTINGS` the command line leaves out from the read run's flags.json, and
    refuses a dataset whose images or classes do not fit the run's model.

    Raises:
      UsageError: --dataset differs from the run's in image shape or classes (one line).
    """
    from lrm_tf.data.registry import DATASETS
    from lrm_tf.report.rundir import RunDir

    path = source_run()
    if path is None:
        return
    recorded = RunDir.read_json(RunDir(path).flags_json, {})
    for name in RUN_SETTINGS:
        if name in recorded and not FLAGS[name].present:
            FLAGS[name].value = recorded[name]
            sources.mark_inherited(name, path)
    trained_on, given = recorded.get("dataset"), FLAGS.dataset
    if trained_on in DATASETS and given in DATASETS and trained_on != given:
        a, b = DATASETS[trained_on], DATASETS[given]
        if tuple(a.image_shape) != tuple(b.image_shape) or a.num_classes != b.num_classes:
            raise UsageError(
                f"--dataset={given}: the model of {path} was trained on {trained_on} "
                f"({_shape(a)}); {given} has {_shape(b)} (leave --dataset out to use the run's)"
            )


def _shape(info) -> str:
    return f"{'x'.join(map(str, info.image_shape))} images, {info.num_classes} classes"


def from_flags() -> Settings:
    """Builds and checks every config from the parsed flags.

    Raises:
      UsageError: one line naming the flag and what is allowed.
    """
    from lrm_tf.data.registry import DATASETS

    inherit_run_settings()
    sources.apply_recipe()  # as parse_flags does, for flags parsed without it
    data = build(config.DataConfig)
    checks.check_model()
    model = build(config.ModelConfig)
    train = build(config.TrainConfig)
    objective = build(config.Objective)
    info = DATASETS[data.dataset]
    threat = build(
        config.Threat,
        eps=info.eps if FLAGS.eps is None else FLAGS.eps,
        eps_step=info.eps_step if FLAGS.eps_step is None else FLAGS.eps_step,
    )
    # The training attack: its own eps and step if given, one start and the true labels, as the
    # papers' training code does (--restarts and --attack_true_labels are evaluation settings).
    train_threat = threat.replace(
        eps=threat.eps if objective.adv_train_eps is None else objective.adv_train_eps,
        eps_step=threat.eps_step if objective.adv_train_eps_step is None else objective.adv_train_eps_step,
        restarts=1,
        attack_true_labels=True,
    )
    evaluation = build(config.EvalConfig)
    checks.check_objective(objective, threat, evaluation.eval_attacks, info.num_classes, data.dataset)
    distribute = build(config.DistributeConfig)
    checks.check_replicas(train.batch_size, distribute.replicas)
    settings = Settings(
        data=data,
        model=model,
        train=train,
        objective=objective,
        threat=threat,
        train_threat=train_threat,
        spsa=build(config.SpsaOptions),
        eval=evaluation,
        curves=build(config.CurvesConfig),
        analysis=build(config.AnalysisConfig),
        audit=build(config.AuditConfig) if FLAGS.mode == "audit" else config.AuditConfig(),
        distribute=distribute,
        load_precision=train.mixed_precision if FLAGS["mixed_precision"].present else None,
    )
    checks.check_scale(settings)
    checks.check_jit(settings)
    checks.check_paths()
    return settings


__all__ = ["Settings", "UsageError", "clear_cache", "from_flags"]
