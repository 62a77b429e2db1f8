"""Black-box transfer: adversarial examples made on a source model, accuracy of a target.

The full source x target matrix is laid out like LRM (Summers & Dinneen 2019) tables 2 and
4: one row per source model, one column per target model. A cell whose source and target are
the same model object is a white-box attack and equals `evaluation.attack_accuracy` for it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping

import numpy as np
import tensorflow as tf

from lrm_tf.config import SpsaOptions, Threat
from lrm_tf.eval.cost import FORWARD, attack_cost
from lrm_tf.eval.evaluation import Attack, adversarial_examples, attack_accuracy, attack_spec
from lrm_tf.report import progress as progress_lines
from lrm_tf.report.progress import Report
from lrm_tf.report.writer import write_report


def transfer_matrix(
    sources: Mapping[str, object],
    targets: Mapping[str, object],
    images: np.ndarray,
    labels: np.ndarray,
    attack: Attack,
    threat: Threat,
    batch_size: int = 500,
    seed: int = 0,
    strategy: tf.distribute.Strategy | None = None,
    progress: bool | Report = True,
    spsa: SpsaOptions | None = None,
) -> dict:
    """Accuracy of every target on the adversarial examples of every source.

    Each source's examples are made once (`evaluation.adversarial_examples`) and then scored
    on each target with `evaluation.attack_accuracy(target, x_adv, labels, 'clean', ...)`,
    i.e. the same accuracy loop as white-box evaluation.

    Args:
      sources: name -> model (Keras, SavedModel or callable images -> logits) to attack.
      targets: name -> model to score; the same object as a source makes a white-box cell.
      images: float [N, H, W, C] in [0, 1]; labels: int [N].
      attack: an attack name ('pgd7_xent') or an `AttackSpec`.
      threat, batch_size, seed, strategy, spsa: as for `evaluation.attack_accuracy` (SPSA
        attacks the first `spsa.spsa_examples` examples only).
      progress: True: a progress line (`lrm_tf.report.progress`) per attack batch on each
        source and per scoring batch on each target; False: none; a report(fraction, note).

    Returns:
      A JSON-able dict: attack, sources, targets, accuracy[source][target] in [0, 1],
      examples, white_box ([source, target] pairs), threat, seed, seconds per source.

    Raises:
      ValueError: no source or no target.
    """
    if not sources or not targets:
        raise ValueError("transfer_matrix needs at least one source and one target model")
    spec = attack_spec(attack)
    accuracy, white_box, seconds = {}, [], {}
    examples = None
    weights, prefixes = [], []  # per source: its attack, then the scoring on each target
    for i, source_name in enumerate(sources, 1):
        weights += [attack_cost(spec, threat, spsa)] + [FORWARD] * len(targets)
        prefixes += [f"source {i}/{len(sources)} {source_name}, attack: "]
        prefixes += [f"{source_name} -> {target_name}: " for target_name in targets]
    with progress_lines.reporting(f"transfer {spec.name}", progress) as report:
        parts = iter(progress_lines.split(report, weights, prefixes))
        for source_name, source in sources.items():
            t0 = time.time()
            x_adv, y = adversarial_examples(
                source, images, labels, spec, threat, batch_size, seed, strategy, spsa, next(parts)
            )
            examples = len(y)
            accuracy[source_name] = {}
            for target_name, target in targets.items():
                acc, _ = attack_accuracy(
                    target, x_adv, y, "clean", threat, batch_size, seed, strategy, progress=next(parts)
                )
                accuracy[source_name][target_name] = acc
                if target is source:
                    white_box.append([source_name, target_name])
            seconds[source_name] = round(time.time() - t0, 2)
    return {
        "attack": spec.name,
        "sources": list(sources),
        "targets": list(targets),
        "accuracy": accuracy,
        "examples": examples,
        "white_box": white_box,
        "threat": dataclasses.asdict(threat),
        "seed": seed,
        "seconds": seconds,
    }


def transfer_markdown(matrix: dict, title: str | None = None) -> str:
    """The matrix as a table laid out like LRM table 2: rows = source, columns = target.

    Args:
      matrix: `transfer_matrix`'s output.
      title: the heading (default: 'Black-box transfer: <attack>').

    Returns:
      The Markdown text; white-box cells are starred.
    """
    threat = matrix["threat"]
    title = title or f"Black-box transfer: {matrix['attack']}"
    white_box = {tuple(pair) for pair in matrix["white_box"]}
    lines = [
        f"# {title}",
        "",
        f"Adversarial examples of `{matrix['attack']}` (eps={threat['eps']:g}, "
        f"eps_step={threat['eps_step']:g}) made on each source model (row) and "
        f"classified by each target model (column); accuracy in percent over "
        f"{matrix['examples']} test examples.",
        "",
        "| source \\ target | " + " | ".join(matrix["targets"]) + " |",
        "|---|" + "---:|" * len(matrix["targets"]),
    ]
    for source in matrix["sources"]:
        cells = []
        for target in matrix["targets"]:
            mark = "*" if (source, target) in white_box else ""
            cells.append(f"{100 * matrix['accuracy'][source][target]:.2f}%{mark}")
        lines.append(f"| {source} | " + " | ".join(cells) + " |")
    if white_box:
        lines += ["", "\\* source and target are the same model: a white-box attack."]
    return "\n".join(lines) + "\n"


def write_transfer(out_dir: str, matrix: dict, name: str = "transfer") -> tuple[str, str]:
    """Writes `<name>.json` and `<name>.md` in `out_dir` (atomically).

    Args:
      out_dir: the directory (created if missing).
      matrix: `transfer_matrix`'s output.
      name: the file stem ('transfer', or 'transfer_<attack>' when several attacks run).

    Returns:
      (json_path, md_path).
    """
    return write_report(out_dir, name, matrix, transfer_markdown(matrix))
