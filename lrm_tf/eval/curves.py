"""Sanity and strength curves of a white-box PGD evaluation (Shafahi et al. 2019, tables 9-11).

* `eps_sweep`: accuracy as eps grows to an unbounded value (Shafahi et al. table 9). With
  L-inf eps = 1 on [0, 1] images every image is reachable, so a working attack must drive
  accuracy to ~0; a plateau above 0 points at gradient masking (Athalye et al. 2018).
* `steps_sweep`: accuracy vs the number of PGD steps (Shafahi table 11).
* `restarts_sweep`: accuracy vs the number of random restarts (Shafahi table 10). Restart r
  uses the same seed whatever the total (`attacks.restart_seed`), so the restarts of a
  smaller count are a subset of a larger count's and the curve cannot increase.

PGD is Madry et al. 2018's (`lrm_tf.attacks.pgd`); every point is one
`evaluation.accuracy_point` call on a typed `AttackSpec` variant (`spec.replace(steps=k)`).
`write_curve` saves `<name>.json` and a `<name>.png` plot.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from lrm_tf import attacks
from lrm_tf.attacks.pgd import STEP_FACTOR, pgd_spec, proportional_eps_step
from lrm_tf.config import CurvesConfig, Threat
from lrm_tf.eval.cost import attack_cost
from lrm_tf.eval.curve_plots import plot_curve, write_curve
from lrm_tf.eval.evaluation import accuracy_point
from lrm_tf.report import progress as progress_lines
from lrm_tf.report.plotting import RunLabel, run_label
from lrm_tf.report.progress import Report

# Shafahi et al. tables 10 and 11: the restart counts and step counts they report.
PAPER_RESTARTS = tuple(range(1, 10))
PAPER_STEPS = (20, 40, 100, 400, 1000)
# Eps multiples of the threat model for the sanity sweep, ending at the unbounded eps = 1
# (Shafahi table 9 goes 50, 60, 100, 150, 255 on the 0-255 scale for an 8/255 threat).
EPS_MULTIPLES = (0, 0.25, 0.5, 1, 2, 4, 8, 16)  # x threat eps; 0 is the clean point
UNBOUNDED_EPS = 1.0

CURVES = ("eps", "steps", "restarts")

__all__ = [
    "CURVES",
    "EPS_MULTIPLES",
    "PAPER_RESTARTS",
    "PAPER_STEPS",
    "STEP_FACTOR",
    "UNBOUNDED_EPS",
    "default_eps_values",
    "eps_sweep",
    "plot_curve",
    "proportional_eps_step",
    "restarts_sweep",
    "run_curves",
    "steps_sweep",
    "write_curve",
]


def default_eps_values(threat_eps: float, unbounded: float = UNBOUNDED_EPS) -> tuple:
    """The sweep's eps values: the threat's eps times 0, 1/4, 1/2, 1, 2, 4, 8, 16 (those
    below `unbounded`), then `unbounded` itself.

    Args:
      threat_eps: the threat model's eps, in the [0, 1] input scale.
      unbounded: the last value (1.0: the whole [0, 1] range, every image reachable).

    Returns:
      Increasing eps values, rounded to 6 decimals.
    """
    values = sorted({round(threat_eps * m, 6) for m in EPS_MULTIPLES if threat_eps * m < unbounded})
    return tuple(values) + (unbounded,)


def _threat(threat: Threat | None, **changes) -> Threat:
    """`threat` with `changes`, or a default threat ([0, 1], one start, true labels)."""
    return threat.replace(**changes) if threat is not None else Threat(**changes)


def _point_reports(report: Report, name: str, values, costs) -> list[Report]:
    """One part of the curve's report per point, weighted by the point's cost."""
    n = len(values)
    return progress_lines.split(
        report, costs, [f"point {i}/{n}, {name} {v:g}: " for i, v in enumerate(values, 1)]
    )


def _eps_point(model, images, labels, spec, eps, eps_step, threat, batch_size, seed, strategy, progress):
    if eps > 0:
        return accuracy_point(
            model,
            images,
            labels,
            spec,
            _threat(threat, eps=eps, eps_step=eps_step),
            batch_size,
            seed,
            strategy,
            progress=progress,
            x=eps,
        )
    # A ball of radius 0 holds only x, so PGD returns x and its accuracy is the clean one
    # (a Threat needs eps > 0): measure 'clean', record the PGD point at eps 0.
    point = accuracy_point(
        model,
        images,
        labels,
        attacks.parse_attack("clean"),
        _threat(threat, eps=1.0, eps_step=1.0),
        batch_size,
        seed,
        strategy,
        progress=progress,
        x=eps,
    )
    return {**point, "attack": spec.name, "eps": eps, "eps_step": eps_step}


def eps_sweep(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    eps_values: Sequence[float],
    steps: int = 100,
    eps_step_fn: Callable[[float, int], float] = proportional_eps_step,
    attack_loss: str = "xent",
    seed: int = 0,
    threat: Threat | None = None,
    norm: str = "linf",
    batch_size: int = 500,
    strategy: tf.distribute.Strategy | None = None,
    progress: bool | Report = False,
) -> dict:
    """Accuracy under PGD-`steps` with `attack_loss` at each eps (Shafahi table 9).

    Args:
      model: a Keras model, a loaded SavedModel or a callable images -> logits.
      images: float [N, H, W, C] in [0, 1]; labels: int [N].
      eps_values: the eps of each point, in the [0, 1] input scale (0: the clean point).
      steps: PGD steps of every point.
      eps_step_fn: (eps, steps) -> the point's step; the default is Madry et al.'s
        2.5 * eps / steps, so the walk length grows with eps.
      attack_loss: 'xent' or 'cw'.
      seed: the evaluation seed.
      threat: supplies the input range, restarts and label choice (default: [0, 1], one
        start, true labels); its eps and step are replaced at each point.
      norm: 'linf' or 'l2'.
      batch_size: evaluation batch size.
      strategy: a `tf.distribute.Strategy` (default: the current one).
      progress: True: a progress line per point and batch (`lrm_tf.report.progress`);
        False: none; a report(fraction, note): the points as parts of it, weighted by cost.

    Returns:
      A JSON-able dict: curve, x, attack, steps, loss, norm, eps_step_rule, seed and the
      points (`evaluation.accuracy_point` records with x = eps).
    """
    spec = pgd_spec(steps, attack_loss, norm)
    cost = attack_cost(spec, _threat(threat, eps=1.0, eps_step=1.0))
    with progress_lines.reporting("curve eps", progress) as report:
        parts = _point_reports(report, "eps", eps_values, [cost if eps > 0 else 1.0 for eps in eps_values])
        points = [
            _eps_point(
                model,
                images,
                labels,
                spec,
                float(eps),
                float(eps_step_fn(eps, steps)),
                threat,
                batch_size,
                seed,
                strategy,
                part,
            )
            for eps, part in zip(eps_values, parts)
        ]
    return {
        "curve": "eps",
        "x": "eps",
        "attack": spec.name,
        "steps": steps,
        "loss": attack_loss,
        "norm": norm,
        "eps_step_rule": _describe_step_rule(eps_step_fn),
        "seed": seed,
        "points": points,
    }


def steps_sweep(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    steps_values: Sequence[int],
    threat: Threat,
    attack_loss: str = "cw",
    seed: int = 0,
    norm: str = "linf",
    batch_size: int = 500,
    strategy: tf.distribute.Strategy | None = None,
    progress: bool | Report = False,
) -> dict:
    """Accuracy under PGD-k for each k at the threat's eps and step (Shafahi table 11 uses
    the CW loss of Carlini & Wagner 2017, hence the default).

    Args:
      model, images, labels, seed, norm, batch_size, strategy, progress: as for `eps_sweep`.
      steps_values: the step counts k.
      threat: eps, step, range, restarts and label choice of every point.
      attack_loss: 'xent' or 'cw'.

    Returns:
      A JSON-able dict: curve, x, loss, norm, eps, eps_step, seed and the points (x = k).
    """
    base = pgd_spec(1, attack_loss, norm)
    specs = [base.replace(steps=int(k)) for k in steps_values]
    with progress_lines.reporting("curve steps", progress) as report:
        parts = _point_reports(report, "steps", steps_values, [attack_cost(s, threat) for s in specs])
        points = [
            accuracy_point(
                model,
                images,
                labels,
                s,
                threat,
                batch_size,
                seed,
                strategy,
                progress=part,
                x=int(k),
                steps=int(k),
            )
            for k, s, part in zip(steps_values, specs, parts)
        ]
    return {
        "curve": "steps",
        "x": "steps",
        "loss": attack_loss,
        "norm": norm,
        "eps": threat.eps,
        "eps_step": threat.eps_step,
        "seed": seed,
        "points": points,
    }


def restarts_sweep(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    restarts_values: Sequence[int],
    threat: Threat,
    steps: int = 20,
    attack_loss: str = "xent",
    seed: int = 0,
    norm: str = "linf",
    batch_size: int = 500,
    strategy: tf.distribute.Strategy | None = None,
    progress: bool | Report = False,
) -> dict:
    """Accuracy under PGD-`steps` with each number of random restarts, the worst case kept
    per example (Shafahi table 10).

    Args:
      model, images, labels, seed, norm, batch_size, strategy, progress: as for `eps_sweep`.
      restarts_values: the restart counts.
      threat: eps, step, range and label choice; its restarts are replaced at each point.
      steps: PGD steps.
      attack_loss: 'xent' or 'cw'.

    Returns:
      A JSON-able dict: curve, x, attack, steps, loss, norm, eps, eps_step, seed and the
      points (x = restarts).
    """
    spec = pgd_spec(steps, attack_loss, norm)
    threats = [threat.replace(restarts=int(r)) for r in restarts_values]
    with progress_lines.reporting("curve restarts", progress) as report:
        parts = _point_reports(report, "restarts", restarts_values, [attack_cost(spec, t) for t in threats])
        points = [
            accuracy_point(
                model, images, labels, spec, t, batch_size, seed, strategy, progress=part, x=t.restarts
            )
            for t, part in zip(threats, parts)
        ]
    return {
        "curve": "restarts",
        "x": "restarts",
        "attack": spec.name,
        "steps": steps,
        "loss": attack_loss,
        "norm": norm,
        "eps": threat.eps,
        "eps_step": threat.eps_step,
        "seed": seed,
        "points": points,
    }


def _describe_step_rule(eps_step_fn) -> str:
    if eps_step_fn is proportional_eps_step:
        return f"eps_step = {STEP_FACTOR} * eps / steps (Madry et al.)"
    return getattr(eps_step_fn, "__doc__", None) or getattr(eps_step_fn, "__name__", "custom")


def run_curves(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    out_dir: str,
    which: CurvesConfig | Sequence[str],
    threat: Threat,
    steps: int | None = None,
    attack_loss: str | None = None,
    eps_values: Sequence[float] | None = None,
    steps_values: Sequence[int] = PAPER_STEPS,
    restarts_values: Sequence[int] = PAPER_RESTARTS,
    batch_size: int = 500,
    seed: int = 0,
    strategy: tf.distribute.Strategy | None = None,
    log: Callable[[str], None] = print,
    progress: bool = True,
    label: RunLabel | None = None,
) -> dict[str, dict]:
    """The curves named in `which`, written as curve_<name>.json and curve_<name>.png.

    Args:
      model: a Keras model, a loaded SavedModel or a callable images -> logits.
      images: float [N, H, W, C] in [0, 1]; labels: int [N].
      out_dir: where the files go.
      which: a `CurvesConfig` (its `curves`, `curve_steps` and `curve_loss`), or the names
        of the curves: any of 'eps', 'steps', 'restarts'.
      threat: the evaluation's threat model.
      steps: PGD steps of the eps and restarts sweeps (default: the config's, else 100).
      attack_loss: 'xent' or 'cw', for every sweep (default: the config's, else 'xent').
      eps_values: the eps sweep's values (default: `default_eps_values(threat.eps)`), each
        with Madry's step 2.5 * eps / steps.
      steps_values: the steps sweep's counts, at the threat's eps and step.
      restarts_values: the restarts sweep's counts, PGD-`steps` at the threat's eps and step.
      batch_size, seed, strategy: as for `evaluation.attack_accuracy`.
      log: where the one-line summaries go.
      progress: a progress line per curve, per point and batch (`lrm_tf.report.progress`).
      label: the run, model and dataset the figures name (default: `run_label(out_dir)`).

    Returns:
      {name: curve} for each name in `which`.

    Raises:
      ValueError: an unknown curve name.
    """
    config = which if isinstance(which, CurvesConfig) else CurvesConfig()
    which = config.curves if isinstance(which, CurvesConfig) else tuple(which)
    steps = config.curve_steps if steps is None else steps
    attack_loss = config.curve_loss if attack_loss is None else attack_loss
    unknown = [w for w in which if w not in CURVES]
    if unknown:
        raise ValueError(f"unknown curve(s) {unknown}; choose from {', '.join(CURVES)}")
    curves = {}
    for kind in which:
        t0 = time.time()
        data, kw = (model, images, labels), dict(batch_size=batch_size, strategy=strategy, progress=progress)
        if kind == "eps":
            eps = eps_values or default_eps_values(threat.eps)
            curve = eps_sweep(*data, eps, steps, proportional_eps_step, attack_loss, seed, threat, **kw)
        elif kind == "steps":
            curve = steps_sweep(*data, steps_values, threat, attack_loss, seed, **kw)
        else:
            curve = restarts_sweep(*data, restarts_values, threat, steps, attack_loss, seed, **kw)
        _, png = write_curve(out_dir, f"curve_{kind}", curve, label or run_label(out_dir, model=model))
        summary = ", ".join(f"{p['x']}: {100 * p['accuracy']:.2f}%" for p in curve["points"])
        log(f"curve {kind} ({time.time() - t0:.0f}s): {summary} -> {png}")
        curves[kind] = curve
    return curves
