"""The config objects of one invocation, built from the flags once (`from_flags`)."""

from __future__ import annotations

import dataclasses
import functools

from lrm_tf import config
from lrm_tf.cli import checks
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


def from_flags() -> Settings:
    """Builds and checks every config from the parsed flags.

    Raises:
      UsageError: one line naming the flag and what is allowed.
    """
    from lrm_tf.data.registry import DATASETS

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
    )
    checks.check_paths()
    return settings


__all__ = ["Settings", "UsageError", "clear_cache", "from_flags"]
