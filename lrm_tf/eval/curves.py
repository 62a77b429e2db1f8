"""Sanity and strength curves of a white-box PGD evaluation (SPEC A7, A8).

* `eps_sweep`: accuracy as eps grows to an unbounded value (Shafahi et al. table 9). With
  L-inf eps = 1 on [0, 1] images every image is reachable, so a working attack must drive
  accuracy to ~0; a plateau above 0 points at gradient masking.
* `steps_sweep`: accuracy vs the number of PGD steps (Shafahi table 11).
* `restarts_sweep`: accuracy vs the number of random restarts (Shafahi table 10). Restart r
  uses the same seed whatever the total (`attacks.restart_seed`), so the restarts of a
  smaller count are a subset of a larger count's and the curve cannot increase.

Every point is one `evaluation.attack_accuracy` call. `write_curve` saves `<name>.json` and a
`<name>.png` plot.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from lrm_tf.eval import evaluation
from lrm_tf.eval.evaluation import ThreatModel
from lrm_tf.report.rundir import write_json_atomic

# Shafahi et al. tables 10 and 11: the restart counts and step counts they report.
PAPER_RESTARTS = tuple(range(1, 10))
PAPER_STEPS = (20, 40, 100, 400, 1000)
# Eps multiples of the threat model for the sanity sweep, ending at the unbounded eps = 1
# (Shafahi table 9 goes 50, 60, 100, 150, 255 on the 0-255 scale for an 8/255 threat).
EPS_MULTIPLES = (0, 0.25, 0.5, 1, 2, 4, 8, 16)  # x threat eps; 0 is the clean point
UNBOUNDED_EPS = 1.0
# Madry et al.'s step rule: step = 2.5 * eps / steps lets a walk cross the ball (from one
# face to the other, plus slack for projections), whatever the number of steps.
STEP_FACTOR = 2.5

CURVES = ("eps", "steps", "restarts")


def proportional_eps_step(eps: float, steps: int) -> float:
    """Madry et al.'s PGD step size for a given eps: 2.5 * eps / steps."""
    return STEP_FACTOR * eps / steps


def default_eps_values(threat_eps: float, unbounded: float = UNBOUNDED_EPS) -> tuple:
    """The threat's eps times 1, 2, 4, 8, 16, below `unbounded`, then `unbounded` itself."""
    values = sorted({round(threat_eps * m, 6) for m in EPS_MULTIPLES if threat_eps * m < unbounded})
    return tuple(values) + (unbounded,)


def _pgd_name(steps: int, loss: str, norm: str) -> str:
    return f"pgd{steps}_{norm}_{loss}" if norm != "linf" else f"pgd{steps}_{loss}"


def accuracy_point(model, images, labels, attack_name, threat, batch_size, seed, strategy,
                   **fields):
    """One `evaluation.attack_accuracy` call as a JSON-ready record (accuracy, examples, the
    threat's eps/step/restarts, seconds) plus `fields`."""
    t0 = time.time()
    acc, n = evaluation.attack_accuracy(model, images, labels, attack_name, threat, batch_size,
                                        seed, strategy, progress=False)
    return {**fields, "attack": attack_name, "eps": threat.eps, "eps_step": threat.eps_step,
            "restarts": threat.restarts, "accuracy": acc, "examples": n,
            "seconds": round(time.time() - t0, 2)}


def eps_sweep(model, images: np.ndarray, labels: np.ndarray, eps_values: Sequence[float],
              steps: int = 100, eps_step_fn: Callable[[float, int], float] = proportional_eps_step,
              attack_loss: str = "xent", seed: int = 0, threat: Optional[ThreatModel] = None,
              norm: str = "linf", batch_size: int = 500,
              strategy: Optional[tf.distribute.Strategy] = None) -> Dict:
    """Accuracy under `pgd<steps>_<attack_loss>` at each eps (Shafahi table 9).

    eps_step_fn(eps, steps) gives each point's step; the default is 2.5 * eps / steps, so
    the walk length grows with eps. `threat` supplies the input range, restarts and label
    choice (default: [0, 1], one start, true labels).
    """
    base = threat or ThreatModel(eps=max(eps_values), eps_step=0.0)
    name = _pgd_name(steps, attack_loss, norm)
    points = [accuracy_point(model, images, labels, name, dataclasses.replace(
        base, eps=float(eps), eps_step=float(eps_step_fn(eps, steps))), batch_size, seed,
        strategy, x=float(eps)) for eps in eps_values]
    return {"curve": "eps", "x": "eps", "attack": name, "steps": steps, "loss": attack_loss,
            "norm": norm, "eps_step_rule": _describe_step_rule(eps_step_fn), "seed": seed,
            "points": points}


def steps_sweep(model, images: np.ndarray, labels: np.ndarray, steps_values: Sequence[int],
                eps: float, eps_step: float, attack_loss: str = "cw", seed: int = 0,
                threat: Optional[ThreatModel] = None, norm: str = "linf",
                batch_size: int = 500, strategy: Optional[tf.distribute.Strategy] = None) -> Dict:
    """Accuracy under `pgd<k>_<attack_loss>` for each k at a fixed eps and step (Shafahi
    table 11 uses the CW loss, hence the default)."""
    base = dataclasses.replace(threat or ThreatModel(eps=eps, eps_step=eps_step),
                               eps=eps, eps_step=eps_step)
    points = [accuracy_point(model, images, labels, _pgd_name(int(k), attack_loss, norm), base,
                     batch_size, seed, strategy, x=int(k), steps=int(k)) for k in steps_values]
    return {"curve": "steps", "x": "steps", "loss": attack_loss, "norm": norm, "eps": eps,
            "eps_step": eps_step, "seed": seed, "points": points}


def restarts_sweep(model, images: np.ndarray, labels: np.ndarray, restarts_values: Sequence[int],
                   eps: float, eps_step: float, steps: int = 20, attack_loss: str = "xent",
                   seed: int = 0, threat: Optional[ThreatModel] = None, norm: str = "linf",
                   batch_size: int = 500,
                   strategy: Optional[tf.distribute.Strategy] = None) -> Dict:
    """Accuracy under `pgd<steps>_<attack_loss>` with each number of random restarts, the
    worst case kept per example (Shafahi table 10)."""
    base = dataclasses.replace(threat or ThreatModel(eps=eps, eps_step=eps_step),
                               eps=eps, eps_step=eps_step)
    name = _pgd_name(steps, attack_loss, norm)
    points = [accuracy_point(model, images, labels, name, dataclasses.replace(base, restarts=int(r)),
                     batch_size, seed, strategy, x=int(r)) for r in restarts_values]
    return {"curve": "restarts", "x": "restarts", "attack": name, "steps": steps,
            "loss": attack_loss, "norm": norm, "eps": eps, "eps_step": eps_step, "seed": seed,
            "points": points}


def _describe_step_rule(eps_step_fn) -> str:
    if eps_step_fn is proportional_eps_step:
        return f"eps_step = {STEP_FACTOR} * eps / steps (Madry et al.)"
    return getattr(eps_step_fn, "__doc__", None) or getattr(eps_step_fn, "__name__", "custom")


_AXIS_LABELS = {"eps": "eps (perturbation budget, [0, 1] pixel scale)",
                "steps": "PGD steps", "restarts": "random restarts (worst case kept)"}


def _title(curve: Dict) -> str:
    if curve["curve"] == "eps":
        return (f"Accuracy vs eps: {curve['attack']}, {curve['eps_step_rule'].split(' (')[0]}"
                f"\n(sanity check, Shafahi et al. table 9)")
    if curve["curve"] == "steps":
        return (f"Accuracy vs PGD steps: {curve['norm']} {curve['loss']} loss, "
                f"eps={curve['eps']:.4g}, step={curve['eps_step']:.4g}\n(Shafahi et al. table 11)")
    return (f"Accuracy vs restarts: {curve['attack']}, eps={curve['eps']:.4g}, "
            f"step={curve['eps_step']:.4g}\n(Shafahi et al. table 10)")


def plot_curve(curve: Dict, path: str):
    """Accuracy (percent) against the swept quantity, each point labelled with its value."""
    plt = pyplot()
    xs = [p["x"] for p in curve["points"]]
    ys = [100 * p["accuracy"] for p in curve["points"]]
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    ax.plot(xs, ys, marker="o", color="tab:blue")
    for x, y in zip(xs, ys):
        ax.annotate(f"{y:.1f}%", (x, y), textcoords="offset points", xytext=(0, 7),
                    ha="center", fontsize=8)
    if curve["curve"] == "steps" and len(xs) > 1 and min(xs) > 0 and max(xs) / min(xs) >= 10:
        ax.set_xscale("log")
        ax.set_xticks(xs, [str(x) for x in xs])
    if curve["curve"] == "restarts":
        ax.set_xticks(xs)
    ax.set_ylim(-3, 105)
    ax.set_xlabel(_AXIS_LABELS[curve["curve"]])
    ax.set_ylabel(f"accuracy (%) on {curve['points'][0]['examples']} examples")
    ax.set_title(_title(curve), fontsize=10)
    ax.grid(True, alpha=0.3)
    save_figure(fig, path)


def pyplot():
    """matplotlib.pyplot on the Agg backend: files only, no display needed."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def save_figure(fig, path: str):
    """Saves a matplotlib figure as PNG atomically (temporary file, then rename) and closes it."""
    plt = pyplot()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp.png")
    try:
        fig.tight_layout()
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)


def write_curve(out_dir: str, name: str, curve: Dict):
    """Writes `<name>.json` (atomically) and `<name>.png`; returns their paths."""
    json_path, png_path = os.path.join(out_dir, f"{name}.json"), os.path.join(out_dir, f"{name}.png")
    write_json_atomic(json_path, curve)
    plot_curve(curve, png_path)
    return json_path, png_path


def run_curves(model, images: np.ndarray, labels: np.ndarray, out_dir: str,
               which: Sequence[str], threat: ThreatModel, steps: int = 100,
               attack_loss: str = "xent", eps_values: Optional[Sequence[float]] = None,
               steps_values: Sequence[int] = PAPER_STEPS,
               restarts_values: Sequence[int] = PAPER_RESTARTS, batch_size: int = 500,
               seed: int = 0, strategy: Optional[tf.distribute.Strategy] = None,
               log: Callable[[str], None] = print) -> Dict[str, Dict]:
    """The curves named in `which` ('eps', 'steps', 'restarts') written as curve_<name>.json/.png.

    eps sweep: `pgd<steps>` at `eps_values` (default: the threat's eps x 1, 2, 4, 8, 16 and
    1.0) with step 2.5 * eps / steps. steps sweep: the threat's eps and step. restarts
    sweep: `pgd<steps>` at the threat's eps and step.
    """
    unknown = [w for w in which if w not in CURVES]
    if unknown:
        raise ValueError(f"unknown curve(s) {unknown}; choose from {', '.join(CURVES)}")
    curves = {}
    for kind in which:
        t0 = time.time()
        if kind == "eps":
            curve = eps_sweep(model, images, labels, eps_values or default_eps_values(threat.eps),
                              steps, proportional_eps_step, attack_loss, seed, threat,
                              batch_size=batch_size, strategy=strategy)
        elif kind == "steps":
            curve = steps_sweep(model, images, labels, steps_values, threat.eps,
                                threat.eps_step, attack_loss, seed, threat,
                                batch_size=batch_size, strategy=strategy)
        else:
            curve = restarts_sweep(model, images, labels, restarts_values, threat.eps,
                                   threat.eps_step, steps, attack_loss, seed, threat,
                                   batch_size=batch_size, strategy=strategy)
        _, png = write_curve(out_dir, f"curve_{kind}", curve)
        summary = ", ".join(f"{p['x']}: {100 * p['accuracy']:.2f}%" for p in curve["points"])
        log(f"curve {kind} ({time.time() - t0:.0f}s): {summary} -> {png}")
        curves[kind] = curve
    return curves
