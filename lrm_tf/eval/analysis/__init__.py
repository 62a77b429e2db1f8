"""The papers' analyses of a trained classifier; each gives numbers (JSON) and a PNG.

* `logit_distributions` (`logits`): histogram, variance, norm, dynamic range and bimodality of
  the logit values on clean and adversarial test data (LRM, Summers & Dinneen 2019, figs. 1
  and 2; per-class sums of |z| as Shafahi et al. 2019, fig. 11).
* `linearized_robustness` (`eps_l`): Shafahi et al. eq. 4 per example - logit gap
  z_y - z_ybar, gradient gap ||grad z_y - grad z_ybar||_1, eps_L = gap / gradient gap - and
  gradient coherence cos(grad z_y, grad z_ybar) (Shafahi figs. 1, 3, 4 and table 1).
* `loss_landscape` (`landscape`): cross-entropy on the plane x + e1 r + e2 sign(grad_x xent)
  spanned by a Rademacher direction r and the FGSM direction (Shafahi figs. 5 and 9).
* `penultimate_activations` (`activations`): per-example sums of the penultimate layer (the
  input of the final Dense layer) on clean and adversarial data, and per-neuron sums of
  |activation| over the test set (Shafahi fig. 10: neurons that never fire).

`run_analyses` (`runner`) runs the chosen ones and writes analysis_<name>.json and
analysis_<name>.png. One module per analysis; `common` holds their shared statistics.
"""

from lrm_tf.eval.analysis.activations import (
    INACTIVE_FRACTION,
    penultimate_activations,
    penultimate_features,
    penultimate_model,
    plot_penultimate_activations,
)
from lrm_tf.eval.analysis.common import HISTOGRAM_BINS
from lrm_tf.eval.analysis.eps_l import eq4_terms, linearized_robustness, plot_linearized_robustness
from lrm_tf.eval.analysis.landscape import (
    LANDSCAPE_IMAGES,
    LANDSCAPE_POINTS,
    LANDSCAPE_RADIUS_OVER_EPS,
    loss_landscape,
    plot_loss_landscape,
)
from lrm_tf.eval.analysis.logits import logit_distributions, logits_of, plot_logit_distributions
from lrm_tf.eval.analysis.runner import ANALYSES, DEFAULT_ATTACK, run_analyses

__all__ = [
    "ANALYSES",
    "DEFAULT_ATTACK",
    "HISTOGRAM_BINS",
    "INACTIVE_FRACTION",
    "LANDSCAPE_IMAGES",
    "LANDSCAPE_POINTS",
    "LANDSCAPE_RADIUS_OVER_EPS",
    "eq4_terms",
    "linearized_robustness",
    "logit_distributions",
    "logits_of",
    "loss_landscape",
    "penultimate_activations",
    "penultimate_features",
    "penultimate_model",
    "plot_linearized_robustness",
    "plot_logit_distributions",
    "plot_loss_landscape",
    "plot_penultimate_activations",
    "run_analyses",
]
