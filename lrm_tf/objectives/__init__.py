"""Training-objective terms of the logit-regularization defenses.

Pure tensor functions: no Keras model state, no Python-side randomness, so they
run inside tf.function and a tf.distribute replica context. `terms.TERMS` is the
table that says which of them a training objective uses, with which weight and how
each reduces over the global batch; `compose.compute_objective` sums it for a step.

`mixup` and `logit_similarity` share their names with their modules. The package
attributes of those names stay the modules (compose.py imports
`lrm_tf.objectives.mixup` as a module), so call them as
`objectives.mixup.mixup(...)` and `objectives.logit_similarity.logit_similarity(...)`
or import them from their modules.
"""

from lrm_tf.objectives import logit_similarity, mixup
from lrm_tf.objectives.labels import smooth_labels_lrm, smooth_labels_shafahi, soft_cross_entropy
from lrm_tf.objectives.logit_squeeze import logit_squeeze_batch, logit_squeeze_example
from lrm_tf.objectives.mixup import vh_mixup
from lrm_tf.objectives.noise import gaussian_noise
from lrm_tf.objectives.pairing import (
    adversarial_logit_pairing,
    clean_logit_pairing,
    cross_entropy_of_softmaxes,
    decoupled_pairing,
    decoupled_pairing_coefficient,
    logit_norm_penalty,
    softmax_cross_entropy_between,
)

__all__ = [
    "adversarial_logit_pairing",
    "clean_logit_pairing",
    "cross_entropy_of_softmaxes",
    "decoupled_pairing",
    "decoupled_pairing_coefficient",
    "gaussian_noise",
    "logit_norm_penalty",
    "logit_similarity",
    "logit_squeeze_batch",
    "logit_squeeze_example",
    "mixup",
    "smooth_labels_lrm",
    "smooth_labels_shafahi",
    "soft_cross_entropy",
    "softmax_cross_entropy_between",
    "vh_mixup",
]
