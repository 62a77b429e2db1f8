"""Runs the chosen analyses and writes analysis_<name>.json and analysis_<name>.png."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from lrm_tf import attacks
from lrm_tf.config import AnalysisConfig, SpsaOptions, Threat
from lrm_tf.eval.analysis.activations import penultimate_activations, plot_penultimate_activations
from lrm_tf.eval.analysis.common import counting
from lrm_tf.eval.analysis.eps_l import linearized_robustness, plot_linearized_robustness
from lrm_tf.eval.analysis.landscape import (
    LANDSCAPE_IMAGES,
    LANDSCAPE_POINTS,
    LANDSCAPE_RADIUS_OVER_EPS,
    loss_landscape,
    plot_loss_landscape,
)
from lrm_tf.eval.analysis.logits import logit_distributions, plot_logit_distributions
from lrm_tf.eval.captions import attack_line
from lrm_tf.eval.cost import FORWARD, GRADIENT, attack_cost
from lrm_tf.eval.evaluation import Attack, attack_outcome, attack_spec
from lrm_tf.report import progress as progress_lines
from lrm_tf.report import tensorboard
from lrm_tf.report.plotting import RunLabel, run_label
from lrm_tf.report.progress import Report
from lrm_tf.report.writer import write_report

ANALYSES = ("logits", "eps_l", "landscape", "activations")
# LRM fig. 2 shows logits on 10-step PGD examples, whose step reaches CIFAR-10's eps; with
# MNIST's step (0.01 of 0.3) 10 steps cannot. APGD-CE sizes its own steps (from 2 eps), so it
# reaches the eps boundary whatever --eps_step is (BUILD_NOTES.md, the analyses' attack).
DEFAULT_ATTACK = "apgd_ce"


def run_analyses(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    out_dir: str,
    threat: Threat,
    seed: int = 0,
    which: AnalysisConfig | Sequence[str] = ANALYSES,
    attack: Attack | None = None,
    batch_size: int = 500,
    landscape_images: int = LANDSCAPE_IMAGES,
    landscape_radius: float | None = None,
    landscape_points: int = LANDSCAPE_POINTS,
    strategy: tf.distribute.Strategy | None = None,
    spsa: SpsaOptions | None = None,
    log: Callable[[str], None] = print,
    progress: bool | Report = True,
    label: RunLabel | None = None,
) -> dict[str, dict]:
    """Runs the analyses in `which` and writes analysis_<name>.json and analysis_<name>.png
    (also as images in `<out_dir>/tensorboard/eval`).

    Args:
      model: a Keras model, a loaded SavedModel or a callable images -> logits.
      images: float [N, H, W, C] in [0, 1]; labels: int [N].
      out_dir: where the files go.
      threat: the threat model: eps for eq. 4's predicted accuracy and the landscape's
        radius; eps, step, range, restarts and label choice of the adversarial data.
      seed: seed of the attack and of the landscape's random direction.
      which: an `AnalysisConfig` (its `analyses` and `analysis_attack`), or the names of the
        analyses: any of 'logits', 'eps_l', 'landscape', 'activations'.
      attack: the attack (a name or an AttackSpec) that makes the adversarial data of
        'logits' and 'activations' (default: the config's, else 'apgd_ce': it reaches eps).
      batch_size: batch size of every model call.
      landscape_images: the landscape uses the first this many images.
      landscape_radius: its half-width (default 1.25 eps: Shafahi fig. 9's 10/255 around an
        8/255 threat).
      landscape_points: grid points per axis.
      strategy: a `tf.distribute.Strategy` for the attack (default: the current one).
      spsa: SPSA's options, when `attack` is SPSA.
      log: where the one-line summaries go.
      progress: True: one progress line for the attack and the analyses, per batch, weighted
        by their cost (`lrm_tf.report.progress`); False: none; a report(fraction, note).
      label: the run, model and dataset the captions name (default: `run_label(out_dir)`,
        from the run's flags.json).

    Returns:
      {name: result} for each name in `which`. A model without a Keras penultimate layer (a
      SavedModel) gets 'activations' as a JSON note saying why it was skipped, and no PNG.

    Raises:
      ValueError: an unknown analysis or a bad attack name.
    """
    if isinstance(which, AnalysisConfig):
        which, attack = which.analyses, which.analysis_attack if attack is None else attack
    attack = DEFAULT_ATTACK if attack is None else attack
    unknown = [w for w in which if w not in ANALYSES]
    if unknown:
        raise ValueError(f"unknown analysis {unknown}; choose from {', '.join(ANALYSES)}")
    images = np.asarray(images, np.float32)
    labels = np.asarray(labels, np.int64)
    spec = attack_spec(attack)
    need_adv = bool({"logits", "activations"} & set(which))
    n = len(labels)
    n_adv = min(attacks.evaluated_examples(spec, spsa) or n, n) if need_adv else 0
    li = min(landscape_images, n)
    inputs = {  # (model inputs the analysis runs through `batched`, cost per input)
        "logits": (n + n_adv, FORWARD),
        "eps_l": (n, FORWARD + 2 * GRADIENT),
        "landscape": (li + li * landscape_points**2, FORWARD),
        "activations": (n + n_adv, FORWARD),
    }
    weights = [attack_cost(spec, threat, spsa) * n_adv] if need_adv else []
    weights += [inputs[name][0] * inputs[name][1] for name in which]
    prefixes = [f"adversarial examples ({spec.name}): "] if need_adv else []
    prefixes += [f"{i}/{len(which)} {name}: " for i, name in enumerate(which, 1)]
    landscape = (landscape_images, landscape_radius, landscape_points)
    with progress_lines.reporting("analyses", progress) as report:
        parts = iter(progress_lines.split(report, weights, prefixes))
        adv, adv_line = None, ""
        if need_adv:
            step = next(parts)
            outcome = attack_outcome(
                model, images, labels, spec, threat, batch_size, seed, strategy, step, spsa, True, _quiet
            )
            adv = outcome.x_adv
            adv_line = attack_line(spec, threat, float(np.mean(outcome.correct)), len(outcome.correct))
        label = label or run_label(out_dir, model=model)
        results = {}
        for name in which:
            with counting(next(parts), inputs[name][0]):
                result, plot = _analysis(
                    name, model, images, labels, adv, threat, seed, spec, batch_size, landscape
                )
            json_path, _ = write_report(out_dir, f"analysis_{name}", result)
            if plot is not None:
                png = os.path.join(out_dir, f"analysis_{name}.png")
                caption = [label.text(), _attack_caption(name, result, threat, adv_line)]
                plot(result, png, caption)
                tensorboard.write_figure(out_dir, f"analysis_{name}", png, "\n".join(caption))
                progress_lines.say(report, f"analysis {name}: {json_path} and analysis_{name}.png", log)
            else:
                progress_lines.say(report, f"analysis {name}: skipped ({result['skipped']})", log)
            results[name] = result
    return results


def _quiet(_line: str) -> None:
    pass


def _attack_caption(name: str, result: dict, threat: Threat, adv_line: str) -> str:
    """The caption's line naming the attack an analysis used, its strength and accuracy."""
    if name == "eps_l":
        return (
            f"attack linearised by Shafahi et al. eq. 4: one step of eps {threat.eps:.4g} (L-inf) "
            f"against the runner-up class: predicted accuracy {100 * result['predicted_accuracy']:.1f}% of "
            f"{result['examples']} examples"
        )
    if name == "landscape":
        n = len(result["images"])
        return (
            attack_line("fgsm_xent", threat, result["fgsm_accuracy"], n)
            + f"; the plot walks +-{result['radius']:.4g} along its direction"
        )
    return adv_line


def _analysis(name, model, images, labels, adv, threat, seed, spec, batch_size, landscape):
    """(result, plot function or None) of the analysis `name`; `landscape`: (images, radius
    or None, points)."""
    if name == "logits":
        result = logit_distributions(model, images, labels, adv, batch_size, spec.name)
        return result, plot_logit_distributions
    if name == "eps_l":
        return linearized_robustness(
            model, images, labels, threat.eps, batch_size
        ), plot_linearized_robustness
    if name == "landscape":
        count, radius, points = landscape
        radius = radius if radius is not None else LANDSCAPE_RADIUS_OVER_EPS * threat.eps
        result = loss_landscape(
            model,
            images[:count],
            labels[:count],
            radius,
            points,
            seed,
            threat.clip_min,
            threat.clip_max,
            batch_size,
            eps=threat.eps,
        )
        return result, plot_loss_landscape
    result = penultimate_activations(model, images, adv, batch_size, spec.name)
    return result, None if "skipped" in result else plot_penultimate_activations
