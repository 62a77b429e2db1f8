"""The loss landscape around test images (Shafahi et al. 2019, figs. 5 and 9): cross-entropy
on the plane x + e_adv sign(grad_x xent) + e_rand r, r a Rademacher direction."""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from lrm_tf.attacks import as_logits_fn
from lrm_tf.attacks.losses import xent_loss
from lrm_tf.eval.analysis.common import batched
from lrm_tf.report.plotting import pyplot, save_figure

# Shafahi fig. 9: the first eight test images, a walk of +-10/255 around an 8/255 threat.
LANDSCAPE_IMAGES = 8
LANDSCAPE_RADIUS_OVER_EPS = 10 / 8
LANDSCAPE_POINTS = 21


def loss_landscape(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    radius: float,
    points: int = LANDSCAPE_POINTS,
    seed: int = 0,
    clip_min: float = 0.0,
    clip_max: float = 1.0,
    batch_size: int = 500,
    eps: float | None = None,
) -> dict:
    """Cross-entropy at clip(x + e_adv * sign(grad_x xent(x)) + e_rand * r) on a grid of
    -radius <= e_adv, e_rand <= radius, r ~ Rademacher per image (Shafahi fig. 9).

    Args:
      model: a Keras model, a loaded SavedModel or a callable images -> logits.
      images: float [n, H, W, C] in [clip_min, clip_max]; labels: int [n].
      radius: the grid's half-width, in the input scale.
      points: grid points per axis (odd, so that 0 is on the grid).
      seed: seed of the Rademacher directions (numpy).
      clip_min, clip_max: the input range; points are clipped to it.
      batch_size: examples per call.
      eps: the threat's eps: the images' accuracy at the FGSM point clip(x + eps *
        sign(grad_x xent)) is recorded (the attack whose direction the plot walks).

    Returns:
      A JSON-able dict: radius, points, seed, steps (the axis values), per-image records
      (label, clean loss, largest loss along each axis and overall), 'loss' [n, points,
      points] (rows indexed by e_rand, columns by e_adv), the axes' mean largest losses, and
      with `eps` given: eps and fgsm_accuracy.
    """
    logits_fn = as_logits_fn(model)
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

    @tf.function
    def correct_at(x, y):
        return tf.equal(tf.argmax(logits_fn(x), axis=1), y)

    clean_loss, adv_dir = batched(loss_and_sign_grad, batch_size, x, y)
    rng = np.random.default_rng(seed)
    rand_dir = rng.choice(np.array([-1.0, 1.0], np.float32), size=x.shape)
    steps = np.linspace(-radius, radius, points).astype(np.float32)
    e_rand, e_adv = np.meshgrid(steps, steps, indexing="ij")  # [points, points]
    grids = []
    for i in range(len(x)):
        walk = (
            x[i][None]
            + e_adv.reshape(-1, *[1] * x[i].ndim) * adv_dir[i][None]
            + e_rand.reshape(-1, *[1] * x[i].ndim) * rand_dir[i][None]
        )
        walk = np.clip(walk, clip_min, clip_max).astype(np.float32)
        grid = batched(loss_at, batch_size, walk, np.full(len(walk), y[i], np.int64))[0]
        grids.append(grid.reshape(points, points))
    grids = np.stack(grids).astype(np.float64)
    centre = points // 2
    per_image = [
        {
            "label": int(y[i]),
            "clean_loss": float(clean_loss[i]),
            "max_loss_adversarial_axis": float(grids[i, centre].max()),
            "max_loss_random_axis": float(grids[i, :, centre].max()),
            "max_loss": float(grids[i].max()),
        }
        for i in range(len(x))
    ]
    fgsm = {}
    if eps is not None:
        x_fgsm = np.clip(x + eps * adv_dir, clip_min, clip_max).astype(np.float32)
        fgsm = {"eps": eps, "fgsm_accuracy": float(np.mean(batched(correct_at, batch_size, x_fgsm, y)[0]))}
    return {
        **fgsm,
        "radius": radius,
        "points": points,
        "seed": seed,
        "steps": [float(s) for s in steps],
        "rows": "e_rand (Rademacher direction)",
        "columns": "e_adv (sign of the xent gradient)",
        "images": per_image,
        "loss": grids.tolist(),
        "mean_max_loss_adversarial_axis": float(np.mean([p["max_loss_adversarial_axis"] for p in per_image])),
        "mean_max_loss_random_axis": float(np.mean([p["max_loss_random_axis"] for p in per_image])),
    }


def plot_loss_landscape(result: dict, path: str, caption=()):
    """One contour plot per image (Shafahi fig. 9's layout) on one colour scale, shared by
    every panel; writes the PNG at `path` with `caption` (`save_figure`)."""
    plt = pyplot()
    n = len(result["images"])
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.2 * cols + 1, 3.1 * rows + 0.6), dpi=110, squeeze=False, layout="constrained"
    )
    steps = np.asarray(result["steps"])
    grids = np.asarray(result["loss"], np.float64)
    finite = grids[np.isfinite(grids)]
    low, high = (finite.min(), finite.max()) if finite.size else (0.0, 1.0)
    levels = np.linspace(low, high if high > low else low + 1.0, 21)
    filled = None
    for i, ax in enumerate(axes.ravel()):
        if i >= n:
            ax.axis("off")
            continue
        filled = ax.contourf(steps, steps, grids[i], levels=levels, cmap="viridis", extend="both")
        ax.plot([0], [0], marker="+", color="white", markersize=10)
        ax.set_title(f"image {i} (label {result['images'][i]['label']})", fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("e_adv: sign(grad xent) direction", fontsize=8)
        ax.set_ylabel("e_rand: Rademacher direction", fontsize=8)
        if "eps" in result:
            ax.axvline(result["eps"], color="white", linestyle=":", linewidth=1)
    if filled is not None:
        bar = fig.colorbar(filled, ax=axes.ravel().tolist(), shrink=0.9, label="cross-entropy (one scale)")
        bar.ax.tick_params(labelsize=7)
    fig.suptitle(
        f"Cross-entropy around the first {n} test images, |e| <= {result['radius']:.4g} "
        f"(Shafahi et al. fig. 9)" + ("; dotted: e_adv = eps" if "eps" in result else ""),
        fontsize=11,
    )
    save_figure(fig, path, caption)
