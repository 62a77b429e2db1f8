"""Every setting of lrm_tf, declared once: its field, default, help text and check.

Each setting is a field of one frozen dataclass (`training.py`: data, model, optimisation,
objective, devices; `evaluation.py`: threat model, attack options, evaluation tools), declared
with `setting(...)` (`setting.py`). A library
user builds these objects directly (`Objective(logit_squeeze=0.5)`); a bad value raises
`ConfigError` (a `ValueError`) naming the field. The command line (`lrm_tf.cli.flags`)
generates one flag per field, with the field's name, default and help, so a setting has one
name everywhere; it keeps only the checks that span several of these objects (for example the
label-smoothing bound, which depends on the dataset's number of classes).

This module imports neither TensorFlow nor Keras. Checks that need a registry (attack names)
import it when they run.
"""

from lrm_tf.config.evaluation import (
    AnalysisConfig,
    AuditConfig,
    CurvesConfig,
    EvalConfig,
    SpsaOptions,
    Threat,
)
from lrm_tf.config.setting import Config, ConfigError, setting
from lrm_tf.config.training import DataConfig, DistributeConfig, ModelConfig, Objective, TrainConfig

FLAG_CONFIGS = (
    DataConfig,
    ModelConfig,
    TrainConfig,
    Objective,
    Threat,
    SpsaOptions,
    EvalConfig,
    CurvesConfig,
    AnalysisConfig,
    AuditConfig,
    DistributeConfig,
)

__all__ = [
    "FLAG_CONFIGS",
    "AnalysisConfig",
    "AuditConfig",
    "Config",
    "ConfigError",
    "CurvesConfig",
    "DataConfig",
    "DistributeConfig",
    "EvalConfig",
    "ModelConfig",
    "Objective",
    "SpsaOptions",
    "Threat",
    "TrainConfig",
    "setting",
]
