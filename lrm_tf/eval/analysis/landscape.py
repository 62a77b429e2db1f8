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

    Returns:
      A JSON-able dict: radius, points, seed, steps (the axis values), per-image records
      (label, clean loss, largest loss along each axis and overall), 'loss' [n, points,
      points] (rows indexed by e_rand, columns by e_adv) and the axes' mean largest losses.
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
    return {
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


def plot_loss_landscape(result: dict, path: str):
    """One contour plot per image (Shafahi fig. 9's layout); writes the PNG at `path`."""
    plt = pyplot()
    n = len(result["images"])
    cols = min(4, n)
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.4 * cols, 3.1 * rows + 0.6), dpi=110, squeeze=False)
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
    fig.suptitle(
        f"Cross-entropy around the first {n} test images, |e| <= {result['radius']:.4g} "
        f"(Shafahi et al. fig. 9); colour = loss",
        fontsize=11,
    )
    save_figure(fig, path)
