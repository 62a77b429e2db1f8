"""Runs the chosen analyses and writes analysis_<name>.json and analysis_<name>.png."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from lrm_tf.config import AnalysisConfig, SpsaOptions, Threat
from lrm_tf.eval.analysis.activations import penultimate_activations, plot_penultimate_activations
from lrm_tf.eval.analysis.eps_l import linearized_robustness, plot_linearized_robustness
from lrm_tf.eval.analysis.landscape import (
    LANDSCAPE_IMAGES,
    LANDSCAPE_POINTS,
    LANDSCAPE_RADIUS_OVER_EPS,
    loss_landscape,
    plot_loss_landscape,
)
from lrm_tf.eval.analysis.logits import logit_distributions, plot_logit_distributions
from lrm_tf.eval.evaluation import Attack, adversarial_examples, attack_spec
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
    adv = None
    if {"logits", "activations"} & set(which):
        adv, _ = adversarial_examples(model, images, labels, spec, threat, batch_size, seed, strategy, spsa)
    results = {}
    for name in which:
        if name == "logits":
            result = logit_distributions(model, images, labels, adv, batch_size, spec.name)
            plot = plot_logit_distributions
        elif name == "eps_l":
            result = linearized_robustness(model, images, labels, threat.eps, batch_size)
            plot = plot_linearized_robustness
        elif name == "landscape":
            radius = (
                landscape_radius if landscape_radius is not None else LANDSCAPE_RADIUS_OVER_EPS * threat.eps
            )
            result = loss_landscape(
                model,
                images[:landscape_images],
                labels[:landscape_images],
                radius,
                landscape_points,
                seed,
                threat.clip_min,
                threat.clip_max,
                batch_size,
            )
            plot = plot_loss_landscape
        else:
            result = penultimate_activations(model, images, adv, batch_size, spec.name)
            plot = None if "skipped" in result else plot_penultimate_activations
        json_path, _ = write_report(out_dir, f"analysis_{name}", result)
        if plot is not None:
            plot(result, os.path.join(out_dir, f"analysis_{name}.png"))
            log(f"analysis {name}: {json_path} and analysis_{name}.png")
        else:
            log(f"analysis {name}: skipped ({result['skipped']})")
        results[name] = result
    return results
