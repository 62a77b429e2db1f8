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
from lrm_tf.eval.cost import FORWARD, GRADIENT, attack_cost
from lrm_tf.eval.evaluation import Attack, adversarial_examples, attack_spec
from lrm_tf.report import progress as progress_lines
from lrm_tf.report.progress import Report
from lrm_tf.report.writer import write_report

ANALYSES = ("logits", "eps_l", "landscape", "activations")
# LRM fig. 2 shows logits on 10-step PGD examples.
DEFAULT_ATTACK = "pgd10_xent"


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
) -> dict[str, dict]:
    """Runs the analyses in `which` and writes analysis_<name>.json and analysis_<name>.png.

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
        'logits' and 'activations' (default: the config's, else 'pgd10_xent', as LRM fig. 2).
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
        adv = None
        if need_adv:
            adv, _ = adversarial_examples(
                model, images, labels, spec, threat, batch_size, seed, strategy, spsa, next(parts)
            )
        results = {}
        for name in which:
            with counting(next(parts), inputs[name][0]):
                result, plot = _analysis(
                    name, model, images, labels, adv, threat, seed, spec, batch_size, landscape
                )
            json_path, _ = write_report(out_dir, f"analysis_{name}", result)
            if plot is not None:
                plot(result, os.path.join(out_dir, f"analysis_{name}.png"))
                progress_lines.say(report, f"analysis {name}: {json_path} and analysis_{name}.png", log)
            else:
                progress_lines.say(report, f"analysis {name}: skipped ({result['skipped']})", log)
            results[name] = result
    return results


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
        )
        return result, plot_loss_landscape
    result = penultimate_activations(model, images, adv, batch_size, spec.name)
    return result, None if "skipped" in result else plot_penultimate_activations
