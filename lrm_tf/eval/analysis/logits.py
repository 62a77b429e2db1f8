"""Logit distributions on clean and adversarial data (LRM, Summers & Dinneen 2019, figs. 1
and 2; per-class sums of |z| as Shafahi et al. 2019, fig. 11)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from lrm_tf.attacks import as_logits_fn
from lrm_tf.eval.analysis.common import batched, histogram, shared_edges, summary_stats
from lrm_tf.report.plotting import integer_ticks, pyplot, save_figure


def logits_of(model, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """The model's logits, float [N, classes], on images float [N, H, W, C] in [0, 1]."""
    logits_fn = tf.function(as_logits_fn(model))
    return batched(lambda x: logits_fn(x), batch_size, np.asarray(images, np.float32))[0]


def bimodality_coefficient(values: np.ndarray) -> float:
    """Sarle's bimodality coefficient of the finite values, pooled: (g^2 + 1) / k with g the
    skewness and k the (non-excess) kurtosis, both population moments (Pfister et al. 2013,
    large-sample form). 5/9 for a uniform distribution, 1/3 for a normal one, up to 1 for two
    point masses; NaN when the values are constant."""
    v = np.asarray(values, np.float64).ravel()
    v = v[np.isfinite(v)] - v[np.isfinite(v)].mean()
    m2, m3, m4 = (np.mean(v**k) for k in (2, 3, 4))
    if not m2 > 0:
        return float("nan")
    return float((m3**2 / m2**3 + 1) / (m4 / m2**2))


def logit_distributions(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    adv_images: np.ndarray | None = None,
    batch_size: int = 500,
    attack_name: str = "",
) -> dict:
    """Logit statistics on clean (and adversarial) images: LRM figs. 1-2, Shafahi fig. 11.

    variance: of all logit values pooled over examples and classes (the "variance of the
    logits" LRM sec. 3.1 reports); mean_example_variance: variance across classes, averaged
    over examples; sum_abs_per_class: sum over examples of |z_c| (Shafahi fig. 11);
    mean_norm: the L2 norm of an example's logit vector, averaged over examples (LRM sec. 3's
    "logit norm"); dynamic_range: p99 - p01 of the pooled logit values (LRM sec. 4's "dynamic
    range of logits", read off its fig. 2 histograms; the 1% tails are left out so that one
    outlier does not set it); bimodality: Sarle's coefficient (skewness^2 + 1) / kurtosis of
    the pooled values (large-sample form, Pfister et al. 2013), above 5/9 (a uniform
    distribution's value) for a bimodal one.

    Args:
      model: a Keras model, a loaded SavedModel or a callable images -> logits.
      images: float [N, H, W, C] in [0, 1]; labels: int [N].
      adv_images: their adversarial versions, or None.
      batch_size: examples per call.
      attack_name: the attack that made `adv_images`, for the record.

    Returns:
      A JSON-able dict: attack, examples, and per data set (clean, adversarial) the logit
      statistics, mean_example_variance, mean_norm, dynamic_range, bimodality, accuracy,
      true_class_logit statistics, sum_abs_per_class and a histogram on edges shared by both sets.
    """
    labels = np.asarray(labels)
    sets = {"clean": logits_of(model, images, batch_size)}
    if adv_images is not None:
        sets["adversarial"] = logits_of(model, adv_images, batch_size)
    edges = shared_edges(*sets.values())
    result = {"attack": attack_name if adv_images is not None else None, "examples": int(len(labels))}
    for name, z in sets.items():
        true_logit = z[np.arange(len(labels)), labels]
        stats = summary_stats(z)
        result[name] = {
            **stats,
            "mean_example_variance": float(z.var(axis=1).mean()),
            "mean_norm": float(np.linalg.norm(z.astype(np.float64), axis=1).mean()),
            "dynamic_range": stats["p99"] - stats["p01"],
            "bimodality": bimodality_coefficient(z),
            "accuracy": float((z.argmax(axis=1) == labels).mean()),
            "true_class_logit": summary_stats(true_logit),
            "sum_abs_per_class": [float(v) for v in np.abs(z).sum(axis=0)],
            "histogram": histogram(z, edges),
        }
    return result


def plot_logit_distributions(result: dict, path: str, caption=()):
    """Logit histograms and per-class |z| sums (LRM figs. 1-2, Shafahi fig. 11) as a PNG, with
    `caption` (`save_figure`); clean and adversarial share the bins and the axes."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    colors = {"clean": "tab:blue", "adversarial": "tab:red"}
    for name in ("clean", "adversarial"):
        if name not in result:
            continue
        r = result[name]
        h = r["histogram"]
        edges = np.asarray(h["edges"])
        label = (
            f"{name}{' (' + result['attack'] + ')' if name == 'adversarial' else ''}: "
            f"variance {r['variance']:.3g}, range {r['dynamic_range']:.3g}, "
            f"accuracy {100 * r['accuracy']:.1f}%"
        )
        axes[0].stairs(h["counts"], edges, color=colors[name], label=label, linewidth=1.5)
        axes[1].bar(
            np.arange(len(r["sum_abs_per_class"])) + (0.2 if name != "clean" else -0.2),
            r["sum_abs_per_class"],
            width=0.4,
            color=colors[name],
            label=name,
        )
    axes[0].set_xlabel("logit value z_c (all examples and classes)")
    axes[0].set_ylabel("count")
    axes[0].set_title("Distribution of logits (LRM figs. 1, 2)")
    axes[0].legend(fontsize=8)
    axes[1].set_xlabel("class c")
    axes[1].set_ylabel("sum over examples of |z_c|")
    axes[1].set_title("Logit magnitude per class (Shafahi fig. 11)")
    axes[1].legend(fontsize=8)
    integer_ticks(axes[0].yaxis, axes[1].xaxis)
    classes = len(result["clean"]["sum_abs_per_class"])
    if classes <= 20:
        axes[1].set_xticks(range(classes))
    fig.suptitle(f"Logits on {result['examples']} test examples", fontsize=11)
    save_figure(fig, path, caption)
