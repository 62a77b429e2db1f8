"""The papers' analyses of a trained classifier (SPEC 4); each gives numbers and a PNG.

* `logit_distributions`: histogram and variance of the logit values on clean and adversarial
  test data (LRM, Summers & Dinneen, figs. 1 and 2; per-class sums of |z| as Shafahi fig. 11).
* `linearized_robustness`: Shafahi et al. eq. 4 per example - logit gap z_y - z_ybar,
  gradient gap ||grad z_y - grad z_ybar||_1, eps_L = gap / gradient gap - and gradient
  coherence cos(grad z_y, grad z_ybar) (Shafahi figs. 1, 3, 4 and table 1).
* `loss_landscape`: cross-entropy on the plane x + e1 r + e2 sign(grad_x xent) spanned by a
  Rademacher direction r and the FGSM direction (Shafahi figs. 5 and 9).
* `penultimate_activations`: per-example sums of the penultimate layer (the input of the
  final Dense layer) on clean and adversarial data, and per-neuron sums of |activation|
  over the test set (Shafahi fig. 10: neurons that never fire).

`run_analyses` runs the chosen ones and writes analysis_<name>.json and analysis_<name>.png.
ybar is the runner-up class, argmax_{j != y} z_j: the class the linearised FGSM step of
eq. 3 reaches first among the classes with the largest logits (the paper's "another class").
"""

from __future__ import annotations

import dataclasses
import os
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from lrm_tf.eval.curves import pyplot, save_figure
from lrm_tf.eval.evaluation import ThreatModel
from lrm_tf.report.rundir import write_json_atomic

ANALYSES = ("logits", "eps_l", "landscape", "activations")
HISTOGRAM_BINS = 60
# LRM fig. 2 shows logits on 10-step PGD examples.
DEFAULT_ATTACK = "pgd10_xent"
# Shafahi fig. 9: the first eight test images, a walk of +-10/255 around an 8/255 threat.
LANDSCAPE_IMAGES = 8
LANDSCAPE_RADIUS_OVER_EPS = 10 / 8
LANDSCAPE_POINTS = 21
# A neuron whose |activation| summed over the test set is below this fraction of the
# largest neuron's sum counts as effectively inactive (Shafahi appendix E).
INACTIVE_FRACTION = 1e-3


# ------------------------------------------------------------------------------ helpers

def _logits_fn(model) -> Callable[[tf.Tensor], tf.Tensor]:
    from lrm_tf.attacks._common import as_logits_fn
    return as_logits_fn(model)


def _batched(fn, batch_size: int, *arrays):
    """Applies fn (tensors -> tuple of tensors) batch by batch; concatenated numpy outputs."""
    outputs = None
    for start in range(0, len(arrays[0]), batch_size):
        out = fn(*(tf.convert_to_tensor(a[start:start + batch_size]) for a in arrays))
        out = out if isinstance(out, (tuple, list)) else (out,)
        outputs = outputs or [[] for _ in out]
        for acc, o in zip(outputs, out):
            acc.append(np.asarray(o))
    return tuple(np.concatenate(o) for o in outputs)


def _stats(values: np.ndarray) -> Dict:
    """Summary statistics of the finite values (JSON-able)."""
    values = np.asarray(values, np.float64).ravel()
    finite = values[np.isfinite(values)]
    if not len(finite):
        return {"count": int(len(values)), "finite": 0}
    q = np.quantile(finite, [0.01, 0.25, 0.5, 0.75, 0.99])
    return {"count": int(len(values)), "finite": int(len(finite)),
            "mean": float(finite.mean()), "variance": float(finite.var()),
            "std": float(finite.std()), "min": float(finite.min()), "max": float(finite.max()),
            "p01": float(q[0]), "p25": float(q[1]), "median": float(q[2]),
            "p75": float(q[3]), "p99": float(q[4])}


def _histogram(values: np.ndarray, edges: np.ndarray) -> Dict:
    counts, _ = np.histogram(np.asarray(values)[np.isfinite(values)], bins=edges)
    return {"edges": [float(e) for e in edges], "counts": [int(c) for c in counts]}


def _shared_edges(*arrays, bins: int = HISTOGRAM_BINS, quantiles=(0.0, 1.0)) -> np.ndarray:
    values = np.concatenate([np.asarray(a, np.float64).ravel() for a in arrays])
    values = values[np.isfinite(values)]
    if not len(values):
        return np.linspace(0.0, 1.0, bins + 1)
    lo, hi = np.quantile(values, quantiles)
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    return np.linspace(lo, hi, bins + 1)


def _adversarial(model, images, labels, attack_name, threat, batch_size, seed, strategy):
    from lrm_tf.eval.transfer import adversarial_examples
    adv, _ = adversarial_examples(model, images, labels, attack_name, threat, batch_size, seed,
                                  strategy)
    return adv


# --------------------------------------------------------------------- (a) logit distributions

def logits_of(model, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    logits_fn = tf.function(_logits_fn(model))
    return _batched(lambda x: logits_fn(x), batch_size, np.asarray(images, np.float32))[0]


def logit_distributions(model, images: np.ndarray, labels: np.ndarray,
                        adv_images: Optional[np.ndarray] = None, batch_size: int = 500,
                        attack_name: str = "") -> Dict:
    """Logit statistics on clean (and adversarial) images: LRM figs. 1-2, Shafahi fig. 11.

    variance: of all logit values pooled over examples and classes (the "variance of the
    logits" LRM sec. 3.1 reports); mean_example_variance: variance across classes, averaged
    over examples; sum_abs_per_class: sum over examples of |z_c| (Shafahi fig. 11).
    """
    labels = np.asarray(labels)
    sets = {"clean": logits_of(model, images, batch_size)}
    if adv_images is not None:
        sets["adversarial"] = logits_of(model, adv_images, batch_size)
    edges = _shared_edges(*sets.values())
    result = {"attack": attack_name if adv_images is not None else None,
              "examples": int(len(labels))}
    for name, z in sets.items():
        true_logit = z[np.arange(len(labels)), labels]
        result[name] = {
            **_stats(z),
            "mean_example_variance": float(z.var(axis=1).mean()),
            "accuracy": float((z.argmax(axis=1) == labels).mean()),
            "true_class_logit": _stats(true_logit),
            "sum_abs_per_class": [float(v) for v in np.abs(z).sum(axis=0)],
            "histogram": _histogram(z, edges),
        }
    return result


def plot_logit_distributions(result: Dict, path: str):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    colors = {"clean": "tab:blue", "adversarial": "tab:red"}
    for name in ("clean", "adversarial"):
        if name not in result:
            continue
        r = result[name]
        h = r["histogram"]
        edges = np.asarray(h["edges"])
        label = (f"{name}{' (' + result['attack'] + ')' if name == 'adversarial' else ''}: "
                 f"variance {r['variance']:.3g}, accuracy {100 * r['accuracy']:.1f}%")
        axes[0].stairs(h["counts"], edges, color=colors[name], label=label, linewidth=1.5)
        axes[1].bar(np.arange(len(r["sum_abs_per_class"])) + (0.2 if name != "clean" else -0.2),
                    r["sum_abs_per_class"], width=0.4, color=colors[name], label=name)
    axes[0].set_xlabel("logit value z_c (all examples and classes)")
    axes[0].set_ylabel("count")
    axes[0].set_title("Distribution of logits (LRM figs. 1, 2)")
    axes[0].legend(fontsize=8)
    axes[1].set_xlabel("class c")
    axes[1].set_ylabel("sum over examples of |z_c|")
    axes[1].set_title("Logit magnitude per class (Shafahi fig. 11)")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"Logits on {result['examples']} test examples", fontsize=11)
    save_figure(fig, path)


# ----------------------------------------------------------------- (b) eq. 4, coherence

def _flat(t):
    return tf.reshape(t, [tf.shape(t)[0], -1])


def eq4_terms(model, images: np.ndarray, labels: np.ndarray,
              batch_size: int = 500) -> Dict[str, np.ndarray]:
    """Per-example terms of Shafahi et al. eq. 4 (arrays of length N).

    logit_gap = z_y - z_ybar with ybar = argmax_{j != y} z_j (negative when misclassified);
    gradient_gap = ||grad_x z_y - grad_x z_ybar||_1; eps_l = logit_gap / gradient_gap
    (eq. 4; +-inf where the gradient gap is 0); cosine = cos(grad_x z_y, grad_x z_ybar)
    (gradient coherence, fig. 1 bottom right); grad_l1_true / grad_l1_other: ||grad_x z||_1
    of each (fig. 4). Gradients of the summed batch logits are per-example gradients because
    the model runs in inference mode (no batch statistics couple the examples).
    """
    logits_fn = _logits_fn(model)

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
        return (gap, grad_gap, cosine, tf.reduce_sum(tf.abs(g_true), axis=1),
                tf.reduce_sum(tf.abs(g_other), axis=1), runner_up)

    gap, grad_gap, cosine, l1_true, l1_other, runner_up = _batched(
        terms, batch_size, np.asarray(images, np.float32), np.asarray(labels, np.int64))
    with np.errstate(divide="ignore", invalid="ignore"):
        eps_l = np.where(grad_gap > 0, gap / np.where(grad_gap > 0, grad_gap, 1.0),
                         np.where(gap >= 0, np.inf, -np.inf))
    return {"logit_gap": gap.astype(np.float64), "gradient_gap": grad_gap.astype(np.float64),
            "eps_l": eps_l.astype(np.float64), "cosine": cosine.astype(np.float64),
            "grad_l1_true": l1_true.astype(np.float64),
            "grad_l1_other": l1_other.astype(np.float64), "runner_up": runner_up}


def linearized_robustness(model, images: np.ndarray, labels: np.ndarray, eps: float,
                          batch_size: int = 500) -> Dict:
    """Summaries and histograms of eq. 4's terms; predicted_accuracy is the share of examples
    with eps < eps_L (Shafahi table 1, the "Equation 4" column)."""
    terms = eq4_terms(model, images, labels, batch_size)
    result = {"eps": eps, "examples": int(len(labels)),
              "predicted_accuracy": float(np.mean(terms["eps_l"] > eps)),
              "definition": "eps_L = (z_y - z_ybar) / ||grad z_y - grad z_ybar||_1, "
                            "ybar = argmax_{j != y} z_j (Shafahi et al. eq. 4)"}
    for name in ("logit_gap", "gradient_gap", "eps_l", "cosine", "grad_l1_true",
                 "grad_l1_other"):
        values = terms[name]
        # eps_L has heavy tails (tiny gradient gaps): bin its central 98%.
        quantiles = (0.01, 0.99) if name == "eps_l" else (0.0, 1.0)
        result[name] = {**_stats(values),
                        "histogram": _histogram(values, _shared_edges(values, quantiles=quantiles))}
    return result


def plot_linearized_robustness(result: Dict, path: str):
    """Shafahi fig. 1's layout: logit gap, gradient gap, eps_L and coherence histograms."""
    plt = pyplot()
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5), dpi=110)
    panels = [("logit_gap", axes[0, 0], "Logit gap (numerator of eq. 4)",
               "z_y - z_ybar"),
              ("eps_l", axes[0, 1], "eps_L (eq. 4)", "eps_L, central 98% of examples"),
              ("gradient_gap", axes[1, 0], "Gradient gap (denominator of eq. 4)",
               "||grad z_y - grad z_ybar||_1"),
              ("cosine", axes[1, 1], "Gradient coherence", "cos(grad z_y, grad z_ybar)")]
    for name, ax, title, xlabel in panels:
        h = result[name]["histogram"]
        ax.stairs(h["counts"], np.asarray(h["edges"]), fill=True, alpha=0.6, color="tab:blue")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("examples")
        median = result[name].get("median")
        ax.set_title(title + (f": median {median:.4g}" if median is not None else ""), fontsize=10)
    axes[0, 1].axvline(result["eps"], color="tab:red", linestyle="--",
                       label=f"eps = {result['eps']:.4g}: predicted accuracy "
                             f"{100 * result['predicted_accuracy']:.1f}%")
    axes[0, 1].legend(fontsize=8)
    fig.suptitle(f"Linearised robustness (Shafahi et al. eq. 4, fig. 1) on "
                 f"{result['examples']} test examples", fontsize=11)
    save_figure(fig, path)


# ---------------------------------------------------------------------- (c) loss landscape

def loss_landscape(model, images: np.ndarray, labels: np.ndarray, radius: float,
                   points: int = LANDSCAPE_POINTS, seed: int = 0, clip_min: float = 0.0,
                   clip_max: float = 1.0, batch_size: int = 500) -> Dict:
    """Cross-entropy at clip(x + e_adv * sign(grad_x xent(x)) + e_rand * r) on a grid of
    -radius <= e_adv, e_rand <= radius, r ~ Rademacher per image (Shafahi fig. 9).

    Returns per image a [points, points] grid, rows indexed by e_rand and columns by e_adv.
    Points are clipped to the input range the model accepts.
    """
    from lrm_tf.attacks.losses import xent_loss
    logits_fn = _logits_fn(model)
    x = np.asarray(images, np.float32)
    y = np.asarray(labels, np.int64)

    @tf.function
    def loss_and_sign_grad(x, y):
        with tf.GradientTape() as tape:
            tape.watch(x)
            loss = xent_loss(y, logits_fn(x))
        return loss, tf.sign(tape.gradient(loss, x))

    @tf.function
    def loss_at(x, y):
        return xent_loss(y, logits_fn(x))

    clean_loss, adv_dir = _batched(loss_and_sign_grad, batch_size, x, y)
    rng = np.random.default_rng(seed)
    rand_dir = rng.choice(np.array([-1.0, 1.0], np.float32), size=x.shape)
    steps = np.linspace(-radius, radius, points).astype(np.float32)
    e_rand, e_adv = np.meshgrid(steps, steps, indexing="ij")  # [points, points]
    grids = []
    for i in range(len(x)):
        walk = (x[i][None] + e_adv.reshape(-1, *[1] * x[i].ndim) * adv_dir[i][None]
                + e_rand.reshape(-1, *[1] * x[i].ndim) * rand_dir[i][None])
        walk = np.clip(walk, clip_min, clip_max).astype(np.float32)
        grid = _batched(loss_at, batch_size, walk, np.full(len(walk), y[i], np.int64))[0]
        grids.append(grid.reshape(points, points))
    grids = np.stack(grids).astype(np.float64)
    centre = points // 2
    per_image = [{"label": int(y[i]), "clean_loss": float(clean_loss[i]),
                  "max_loss_adversarial_axis": float(grids[i, centre].max()),
                  "max_loss_random_axis": float(grids[i, :, centre].max()),
                  "max_loss": float(grids[i].max())} for i in range(len(x))]
    return {"radius": radius, "points": points, "seed": seed, "steps": [float(s) for s in steps],
            "rows": "e_rand (Rademacher direction)", "columns": "e_adv (sign of the xent gradient)",
            "images": per_image, "loss": grids.tolist(),
            "mean_max_loss_adversarial_axis": float(np.mean([p["max_loss_adversarial_axis"]
                                                             for p in per_image])),
            "mean_max_loss_random_axis": float(np.mean([p["max_loss_random_axis"]
                                                        for p in per_image]))}


def plot_loss_landscape(result: Dict, path: str):
    plt = pyplot()
    n = len(result["images"])
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.1 * rows + 0.6), dpi=110,
                             squeeze=False)
    steps = np.asarray(result["steps"])
    for i, ax in enumerate(axes.ravel()):
        if i >= n:
            ax.axis("off")
            continue
        grid = np.asarray(result["loss"][i])
        filled = ax.contourf(steps, steps, grid, levels=20, cmap="viridis")
        fig.colorbar(filled, ax=ax, fraction=0.046, pad=0.03).ax.tick_params(labelsize=7)
        ax.plot([0], [0], marker="+", color="white", markersize=10)
        ax.set_title(f"image {i} (label {result['images'][i]['label']})", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("e_adv: sign(grad xent) direction", fontsize=8)
        ax.set_ylabel("e_rand: Rademacher direction", fontsize=8)
    fig.suptitle(f"Cross-entropy around the first {n} test images, |e| <= {result['radius']:.4g} "
                 f"(Shafahi et al. fig. 9); colour = loss", fontsize=11)
    save_figure(fig, path)


# ------------------------------------------------------------- (d) penultimate activations

def penultimate_model(model):
    """keras.Model from the input to the input of the final Dense layer, or None when the
    model is not a Keras model ending in Dense (e.g. a loaded SavedModel)."""
    import keras
    if not isinstance(model, keras.Model) or not model.layers:
        return None
    last = model.layers[-1]
    if not isinstance(last, keras.layers.Dense):
        return None
    return keras.Model(model.inputs, last.input)


def penultimate_features(features, images: np.ndarray, batch_size: int = 500) -> np.ndarray:
    """[N, units] float64 activations of a `penultimate_model`, flattened per example."""
    feature_fn = tf.function(lambda x: features(x, training=False))
    act = _batched(feature_fn, batch_size, np.asarray(images, np.float32))[0]
    return act.reshape(len(act), -1).astype(np.float64)


def penultimate_activations(model, images: np.ndarray, adv_images: Optional[np.ndarray] = None,
                            batch_size: int = 500, attack_name: str = "") -> Dict:
    """Per-example sums of the penultimate activations (clean vs adversarial) and per-neuron
    sums of |activation| over the examples (Shafahi appendix E, fig. 10)."""
    features = penultimate_model(model)
    if features is None:
        return {"skipped": "needs a Keras model whose last layer is Dense (the penultimate "
                           "layer is its input); a SavedModel exposes only the logits - "
                           "load the run directory's model.keras instead"}
    sets = {"clean": images}
    if adv_images is not None:
        sets["adversarial"] = adv_images
    result = {"layer": model.layers[-1].name, "attack": attack_name if adv_images is not None
              else None, "examples": int(len(images))}
    per_example = {}
    for name, x in sets.items():
        act = penultimate_features(features, x, batch_size)
        neuron_sums = np.abs(act).sum(axis=0)
        per_example[name] = act.sum(axis=1)
        threshold = INACTIVE_FRACTION * neuron_sums.max() if neuron_sums.max() > 0 else 0.0
        result[name] = {
            "neurons": int(act.shape[1]),
            "per_example_sum": _stats(per_example[name]),
            "per_neuron_abs_sum": [float(v) for v in neuron_sums],
            "dead_neurons": int(np.sum(neuron_sums == 0)),
            "inactive_neurons": int(np.sum(neuron_sums <= threshold)),
        }
    edges = _shared_edges(*per_example.values())
    for name, sums in per_example.items():
        result[name]["per_example_histogram"] = _histogram(sums, edges)
    return result


def plot_penultimate_activations(result: Dict, path: str):
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), dpi=110)
    colors = {"clean": "tab:blue", "adversarial": "tab:red"}
    for name in ("clean", "adversarial"):
        if name not in result:
            continue
        r = result[name]
        h = r["per_example_histogram"]
        label = name + (f" ({result['attack']})" if name == "adversarial" else "")
        axes[0].stairs(h["counts"], np.asarray(h["edges"]), color=colors[name], linewidth=1.5,
                       label=f"{label}: mean {r['per_example_sum']['mean']:.4g}")
        ranked = np.sort(r["per_neuron_abs_sum"])[::-1]
        axes[1].plot(np.arange(len(ranked)), ranked, color=colors[name],
                     label=f"{label}: {r['inactive_neurons']} of {r['neurons']} inactive")
    axes[0].set_xlabel(f"sum of the {result['clean']['neurons']} penultimate activations")
    axes[0].set_ylabel("examples")
    axes[0].set_title("Summed activation per example")
    axes[0].legend(fontsize=8)
    axes[1].set_xlabel("neuron, ranked by its sum")
    axes[1].set_ylabel("sum over examples of |activation|")
    axes[1].set_title("Per-neuron activation (Shafahi fig. 10)")
    axes[1].legend(fontsize=8)
    fig.suptitle(f"Penultimate layer (input of '{result['layer']}') on {result['examples']} "
                 f"test examples", fontsize=11)
    save_figure(fig, path)


# --------------------------------------------------------------------------------- driver

def run_analyses(model, images: np.ndarray, labels: np.ndarray, out_dir: str, eps: float,
                 eps_step: float, seed: int = 0, which: Sequence[str] = ANALYSES,
                 attack_name: str = DEFAULT_ATTACK, batch_size: int = 500,
                 landscape_images: int = LANDSCAPE_IMAGES,
                 landscape_radius: Optional[float] = None,
                 landscape_points: int = LANDSCAPE_POINTS, threat: Optional[ThreatModel] = None,
                 strategy: Optional[tf.distribute.Strategy] = None,
                 log: Callable[[str], None] = print) -> Dict[str, Dict]:
    """Runs the analyses in `which` and writes analysis_<name>.json and analysis_<name>.png.

    Adversarial data ('logits', 'activations') comes from `attack_name` at (eps, eps_step)
    with `threat`'s range, restarts and label choice. The landscape uses the first
    `landscape_images` images and a radius of 1.25 eps unless given (Shafahi fig. 9:
    10/255 around an 8/255 threat). A model without a Keras penultimate layer (a
    SavedModel) gets 'activations' as a JSON note saying why it was skipped, and no PNG.
    """
    unknown = [w for w in which if w not in ANALYSES]
    if unknown:
        raise ValueError(f"unknown analysis {unknown}; choose from {', '.join(ANALYSES)}")
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels, np.int64)
    threat = dataclasses.replace(threat or ThreatModel(eps=eps, eps_step=eps_step),
                                 eps=eps, eps_step=eps_step)
    adv = None
    if {"logits", "activations"} & set(which):
        adv = _adversarial(model, images, labels, attack_name, threat, batch_size, seed, strategy)
    results = {}
    for name in which:
        if name == "logits":
            result = logit_distributions(model, images, labels, adv, batch_size, attack_name)
            plot = plot_logit_distributions
        elif name == "eps_l":
            result = linearized_robustness(model, images, labels, eps, batch_size)
            plot = plot_linearized_robustness
        elif name == "landscape":
            radius = landscape_radius if landscape_radius is not None \
                else LANDSCAPE_RADIUS_OVER_EPS * eps
            result = loss_landscape(model, images[:landscape_images], labels[:landscape_images],
                                    radius, landscape_points, seed, threat.clip_min,
                                    threat.clip_max, batch_size)
            plot = plot_loss_landscape
        else:
            result = penultimate_activations(model, images, adv, batch_size, attack_name)
            plot = None if "skipped" in result else plot_penultimate_activations
        json_path = os.path.join(out_dir, f"analysis_{name}.json")
        write_json_atomic(json_path, result)
        if plot is not None:
            plot(result, os.path.join(out_dir, f"analysis_{name}.png"))
            log(f"analysis {name}: {json_path} and analysis_{name}.png")
        else:
            log(f"analysis {name}: skipped ({result['skipped']})")
        results[name] = result
    return results
