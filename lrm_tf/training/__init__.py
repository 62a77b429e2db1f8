"""Training: the composable robust `train_step` (`trainer`), learning-rate schedules and
tf.distribute strategies."""

from lrm_tf.config import TrainConfig
from lrm_tf.training.checkpoints import DivergenceError
from lrm_tf.training.health import NotLearningError
from lrm_tf.training.trainer import RobustTrainer, build_trainer, steps_plan, train

__all__ = [
    "DivergenceError",
    "NotLearningError",
    "RobustTrainer",
    "TrainConfig",
    "build_trainer",
    "steps_plan",
    "train",
]
