"""Penultimate-layer activations (Shafahi et al. 2019, appendix E, fig. 10): per-example
sums on clean and adversarial data, per-neuron sums of |activation| (neurons that never fire)."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from lrm_tf.eval.analysis.common import batched, histogram, shared_edges, summary_stats
from lrm_tf.report.plotting import integer_ticks, pyplot, save_figure

# A neuron whose |activation| summed over the test set is below this fraction of the
# largest neuron's sum counts as effectively inactive (Shafahi appendix E).
INACTIVE_FRACTION = 1e-3


def penultimate_model(model):
    """The sub-model from the input to the penultimate layer (the final Dense layer's input).

    Args:
      model: any classifier.

    Returns:
      A keras.Model images [N, H, W, C] -> activations [N, ...], or None when `model` is
      not a Keras model ending in Dense (e.g. a loaded SavedModel).
    """
    import keras

    if not isinstance(model, keras.Model) or not model.layers:
        return None
    last = model.layers[-1]
    if not isinstance(last, keras.layers.Dense):
        return None
    return keras.Model(model.inputs, last.input)


def penultimate_features(features, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """The activations of a `penultimate_model` in inference mode.

    Args:
      features: a `penultimate_model`.
      images: float [N, H, W, C] in [0, 1].
      batch_size: examples per call.

    Returns:
      float64 [N, units], flattened per example.
    """
    feature_fn = tf.function(lambda x: features(x, training=False))
    act = batched(feature_fn, batch_size, np.asarray(images, np.float32))[0]
    return act.reshape(len(act), -1).astype(np.float64)


def penultimate_activations(
    model,
    images: np.ndarray,
    adv_images: np.ndarray | None = None,
    batch_size: int = 500,
    attack_name: str = "",
) -> dict:
    """Per-example sums of the penultimate activations (clean vs adversarial) and per-neuron
    sums of |activation| over the examples (Shafahi appendix E, fig. 10).

    Args:
      model: a Keras model ending in Dense (anything else is skipped with a note).
      images: float [N, H, W, C] in [0, 1]; adv_images: their adversarial versions or None.
      batch_size: examples per call.
      attack_name: the attack that made `adv_images`, for the record.

    Returns:
      A JSON-able dict: layer, attack, examples, and per data set (clean, adversarial):
      neurons, per_example_sum statistics and histogram, per_neuron_abs_sum, dead_neurons
      (sum 0) and inactive_neurons (sum <= 1e-3 of the largest); or {'skipped': why}.
    """
    features = penultimate_model(model)
    if features is None:
        return {
            "skipped": "needs a Keras model whose last layer is Dense (the penultimate "
            "layer is its input); a SavedModel exposes only the logits - "
            "load the run directory's model.keras instead"
        }
    sets = {"clean": images}
    if adv_images is not None:
        sets["adversarial"] = adv_images
    result = {
        "layer": model.layers[-1].name,
        "attack": attack_name if adv_images is not None else None,
        "examples": int(len(images)),
    }
    per_example = {}
    for name, x in sets.items():
        act = penultimate_features(features, x, batch_size)
        neuron_sums = np.abs(act).sum(axis=0)
        per_example[name] = act.sum(axis=1)
        threshold = INACTIVE_FRACTION * neuron_sums.max() if neuron_sums.max() > 0 else 0.0
        result[name] = {
            "neurons": int(act.shape[1]),
            "per_example_sum": summary_stats(per_example[name]),
            "per_neuron_abs_sum": [float(v) for v in neuron_sums],
            "dead_neurons": int(np.sum(neuron_sums == 0)),
            "inactive_neurons": int(np.sum(neuron_sums <= threshold)),
        }
    edges = shared_edges(*per_example.values())
    for name, sums in per_example.items():
        result[name]["per_example_histogram"] = histogram(sums, edges)
    return result


def plot_penultimate_activations(result: dict, path: str, caption=()):
    """Per-example sums (histogram) and ranked per-neuron sums; writes the PNG at `path` with
    `caption` (`save_figure`); clean and adversarial share the bins and the axes."""
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    colors = {"clean": "tab:blue", "adversarial": "tab:red"}
    for name in ("clean", "adversarial"):
        if name not in result:
            continue
        r = result[name]
        h = r["per_example_histogram"]
        label = name + (f" ({result['attack']})" if name == "adversarial" else "")
        axes[0].stairs(
            h["counts"],
            np.asarray(h["edges"]),
            color=colors[name],
            linewidth=1.5,
            label=f"{label}: mean {r['per_example_sum']['mean']:.4g}",
        )
        ranked = np.sort(r["per_neuron_abs_sum"])[::-1]
        axes[1].plot(
            np.arange(len(ranked)),
            ranked,
            color=colors[name],
            label=f"{label}: {r['inactive_neurons']} of {r['neurons']} inactive",
        )
    axes[0].set_xlabel(f"sum of the {result['clean']['neurons']} penultimate activations")
    axes[0].set_ylabel("examples")
    axes[0].set_title("Summed activation per example")
    axes[0].legend(fontsize=8)
    axes[1].set_xlabel("neuron, ranked by its sum")
    axes[1].set_ylabel("sum over examples of |activation|")
    axes[1].set_title("Per-neuron activation (Shafahi fig. 10)")
    axes[1].legend(fontsize=8)
    integer_ticks(axes[0].yaxis, axes[1].xaxis)
    fig.suptitle(
        f"Penultimate layer (input of '{result['layer']}') on {result['examples']} test examples", fontsize=11
    )
    save_figure(fig, path, caption)
