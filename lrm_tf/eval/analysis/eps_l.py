"""Linearised robustness (Shafahi et al. 2019, eq. 4) and gradient coherence (figs. 1, 3, 4
and table 1).

Per example: logit gap z_y - z_ybar, gradient gap ||grad z_y - grad z_ybar||_1, eps_L = gap /
gradient gap, and cos(grad z_y, grad z_ybar). ybar is the runner-up class, argmax_{j != y}
z_j: the class the linearised FGSM step of eq. 3 reaches first among the classes with the
largest logits (the paper's "another class").
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from lrm_tf.attacks import as_logits_fn
from lrm_tf.eval.analysis.common import batched, histogram, shared_edges, summary_stats
from lrm_tf.report.plotting import integer_ticks, pyplot, save_figure


def _flat(t):
    return tf.reshape(t, [tf.shape(t)[0], -1])


def eq4_terms(model, images: np.ndarray, labels: np.ndarray, batch_size: int = 500) -> dict[str, np.ndarray]:
    """Per-example terms of Shafahi et al. eq. 4 (arrays of length N).

    logit_gap = z_y - z_ybar with ybar = argmax_{j != y} z_j (negative when misclassified);
    gradient_gap = ||grad_x z_y - grad_x z_ybar||_1; eps_l = logit_gap / gradient_gap
    (eq. 4; +-inf where the gradient gap is 0); cosine = cos(grad_x z_y, grad_x z_ybar)
    (gradient coherence, fig. 1 bottom right); grad_l1_true / grad_l1_other: ||grad_x z||_1
    of each (fig. 4). Gradients of the summed batch logits are per-example gradients because
    the model runs in inference mode (no batch statistics couple the examples).

    Args:
      model: a Keras model, a loaded SavedModel or a callable images -> logits.
      images: float [N, H, W, C] in [0, 1]; labels: int [N].
      batch_size: examples per call.

    Returns:
      {'logit_gap', 'gradient_gap', 'eps_l', 'cosine', 'grad_l1_true', 'grad_l1_other':
      float64 [N], 'runner_up': int [N]}.
    """
    logits_fn = as_logits_fn(model)

    @tf.function
    def terms(x, y):
        with tf.GradientTape(persistent=True) as tape:
            tape.watch(x)
            z = logits_fn(x)
            is_true = tf.one_hot(y, tf.shape(z)[1], on_value=True, off_value=False)
            z_true = tf.reduce_sum(tf.where(is_true, z, tf.zeros_like(z)), axis=1)
            runner_up = tf.argmax(tf.where(is_true, tf.fill(tf.shape(z), -np.inf), z), axis=1)
            z_other = tf.gather(z, runner_up, axis=1, batch_dims=1)
            sum_true, sum_other = tf.reduce_sum(z_true), tf.reduce_sum(z_other)
        g_true = _flat(tape.gradient(sum_true, x))
        g_other = _flat(tape.gradient(sum_other, x))
        del tape
        gap = z_true - z_other
        grad_gap = tf.reduce_sum(tf.abs(g_true - g_other), axis=1)
        dot = tf.reduce_sum(g_true * g_other, axis=1)
        norms = tf.norm(g_true, axis=1) * tf.norm(g_other, axis=1)
        cosine = tf.where(norms > 0, dot / tf.maximum(norms, 1e-30), tf.zeros_like(dot))
        return (
            gap,
            grad_gap,
            cosine,
            tf.reduce_sum(tf.abs(g_true), axis=1),
            tf.reduce_sum(tf.abs(g_other), axis=1),
            runner_up,
        )

    gap, grad_gap, cosine, l1_true, l1_other, runner_up = batched(
        terms, batch_size, np.asarray(images, np.float32), np.asarray(labels, np.int64)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        eps_l = np.where(
            grad_gap > 0, gap / np.where(grad_gap > 0, grad_gap, 1.0), np.where(gap >= 0, np.inf, -np.inf)
        )
    return {
        "logit_gap": gap.astype(np.float64),
        "gradient_gap": grad_gap.astype(np.float64),
        "eps_l": eps_l.astype(np.float64),
        "cosine": cosine.astype(np.float64),
        "grad_l1_true": l1_true.astype(np.float64),
        "grad_l1_other": l1_other.astype(np.float64),
        "runner_up": runner_up,
    }


def linearized_robustness(
    model, images: np.ndarray, labels: np.ndarray, eps: float, batch_size: int = 500
) -> dict:
    """Summaries and histograms of eq. 4's terms; predicted_accuracy is the share of examples
    with eps < eps_L (Shafahi table 1, the "Equation 4" column).

    Args:
      model, images, labels, batch_size: as for `eq4_terms`.
      eps: the threat's L-inf eps, in the [0, 1] input scale.

    Returns:
      A JSON-able dict: eps, examples, predicted_accuracy, definition, and per term
      statistics with a histogram (eps_L's over its central 98%).
    """
    terms = eq4_terms(model, images, labels, batch_size)
    result = {
        "eps": eps,
        "examples": int(len(labels)),
        "predicted_accuracy": float(np.mean(terms["eps_l"] > eps)),
        "definition": "eps_L = (z_y - z_ybar) / ||grad z_y - grad z_ybar||_1, "
        "ybar = argmax_{j != y} z_j (Shafahi et al. eq. 4)",
    }
    for name in ("logit_gap", "gradient_gap", "eps_l", "cosine", "grad_l1_true", "grad_l1_other"):
        values = terms[name]
        # eps_L has heavy tails (tiny gradient gaps): bin its central 98%.
        quantiles = (0.01, 0.99) if name == "eps_l" else (0.0, 1.0)
        result[name] = {
            **summary_stats(values),
            "histogram": histogram(values, shared_edges(values, quantiles=quantiles)),
        }
    return result


def plot_linearized_robustness(result: dict, path: str, caption=()):
    """Shafahi fig. 1's layout: logit gap, gradient gap, eps_L and coherence histograms, with
    `caption` (`save_figure`)."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), dpi=110)
    panels = [
        ("logit_gap", axes[0, 0], "Logit gap (numerator of eq. 4)", "z_y - z_ybar"),
        ("eps_l", axes[0, 1], "eps_L (eq. 4)", "eps_L, central 98% of examples"),
        ("gradient_gap", axes[1, 0], "Gradient gap (denominator of eq. 4)", "||grad z_y - grad z_ybar||_1"),
        ("cosine", axes[1, 1], "Gradient coherence", "cos(grad z_y, grad z_ybar)"),
    ]
    for name, ax, title, xlabel in panels:
        h = result[name]["histogram"]
        ax.stairs(h["counts"], np.asarray(h["edges"]), fill=True, alpha=0.6, color="tab:blue")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("examples")
        integer_ticks(ax.yaxis)
        median = result[name].get("median")
        ax.set_title(title + (f": median {median:.4g}" if median is not None else ""), fontsize=10)
    axes[0, 1].axvline(
        result["eps"],
        color="tab:red",
        linestyle="--",
        label=f"eps = {result['eps']:.4g}: predicted accuracy {100 * result['predicted_accuracy']:.1f}%",
    )
    axes[0, 1].legend(fontsize=8)
    fig.suptitle(
        f"Linearised robustness (Shafahi et al. eq. 4, fig. 1) on {result['examples']} test examples",
        fontsize=11,
    )
    save_figure(fig, path, caption)
