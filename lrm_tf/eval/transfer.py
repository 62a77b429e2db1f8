"""Black-box transfer (SPEC A6): adversarial examples made on a source model, accuracy of a target.

The full source x target matrix is laid out like LRM (Summers & Dinneen) tables 2 and 4:
one row per source model, one column per target model. A cell whose source and target are
the same model object is a white-box attack and equals `evaluation.attack_accuracy` for it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from typing import Dict, Mapping, Optional

import numpy as np
import tensorflow as tf

from lrm_tf.eval import evaluation
from lrm_tf.eval.evaluation import ThreatModel
from lrm_tf.report.rundir import write_json_atomic, write_text_atomic


def adversarial_examples(model, images: np.ndarray, labels: np.ndarray, attack_name: str,
                         threat: ThreatModel, batch_size: int = 500, seed: int = 0,
                         strategy: Optional[tf.distribute.Strategy] = None):
    """The adversarial images that `evaluation.attack_accuracy` scores, as a float32 array.

    Same attack construction, same batching and the same per-batch seed (seed, i), so the
    images are those attack_accuracy makes with the same arguments. SPSA runs on the first
    `threat.spsa_examples` examples only, as in attack_accuracy: returns (images, labels)
    of the examples actually attacked.
    """
    strategy = strategy or tf.distribute.get_strategy()
    _, attack, images, labels = evaluation.build_threat_attack(model, attack_name, threat,
                                                               images, labels)
    # Shards are contiguous and in replica order, so gathering restores the batch order.
    gather = lambda s, v: s.gather(v, axis=0)
    batches = [np.asarray(x_adv, np.float32) for _, x_adv in evaluation.map_batches(
        tf.function(attack), images, labels, batch_size, seed, strategy, gather)]
    shape = (0, *np.shape(images)[1:])
    adv = np.concatenate(batches) if batches else np.zeros(shape, np.float32)
    return adv, np.asarray(labels)


def transfer_matrix(sources: Mapping[str, object], targets: Mapping[str, object],
                    images: np.ndarray, labels: np.ndarray, attack_name: str,
                    threat: ThreatModel, batch_size: int = 500, seed: int = 0,
                    strategy: Optional[tf.distribute.Strategy] = None,
                    progress: bool = False) -> Dict:
    """Accuracy of every target on the adversarial examples of every source (JSON-able).

    Each source's examples are made once and then scored on each target with
    `evaluation.attack_accuracy(target, x_adv, labels, 'clean', ...)`, i.e. the same
    accuracy loop as white-box evaluation.
    """
    if not sources or not targets:
        raise ValueError("transfer_matrix needs at least one source and one target model")
    accuracy, white_box, seconds = {}, [], {}
    examples = None
    for source_name, source in sources.items():
        t0 = time.time()
        x_adv, y = adversarial_examples(source, images, labels, attack_name, threat,
                                        batch_size, seed, strategy)
        examples = len(y)
        accuracy[source_name] = {}
        for target_name, target in targets.items():
            acc, _ = evaluation.attack_accuracy(target, x_adv, y, "clean", threat, batch_size,
                                                seed, strategy, progress=progress)
            accuracy[source_name][target_name] = acc
            if target is source:
                white_box.append([source_name, target_name])
        seconds[source_name] = round(time.time() - t0, 2)
    return {"attack": attack_name, "sources": list(sources), "targets": list(targets),
            "accuracy": accuracy, "examples": examples, "white_box": white_box,
            "threat": dataclasses.asdict(threat), "seed": seed, "seconds": seconds}


def transfer_markdown(matrix: Dict, title: Optional[str] = None) -> str:
    """The matrix as a table laid out like LRM table 2: rows = source, columns = target."""
    threat = matrix["threat"]
    title = title or f"Black-box transfer: {matrix['attack']}"
    white_box = {tuple(pair) for pair in matrix["white_box"]}
    lines = [f"# {title}", "",
             f"Adversarial examples of `{matrix['attack']}` (eps={threat['eps']:g}, "
             f"eps_step={threat['eps_step']:g}) made on each source model (row) and "
             f"classified by each target model (column); accuracy in percent over "
             f"{matrix['examples']} test examples.", "",
             "| source \\ target | " + " | ".join(matrix["targets"]) + " |",
             "|---|" + "---:|" * len(matrix["targets"])]
    for source in matrix["sources"]:
        cells = []
        for target in matrix["targets"]:
            mark = "*" if (source, target) in white_box else ""
            cells.append(f"{100 * matrix['accuracy'][source][target]:.2f}%{mark}")
        lines.append(f"| {source} | " + " | ".join(cells) + " |")
    if white_box:
        lines += ["", "\\* source and target are the same model: a white-box attack."]
    return "\n".join(lines) + "\n"


def write_transfer(out_dir: str, matrix: Dict, name: str = "transfer"):
    """Writes `<name>.json` and `<name>.md` in out_dir atomically; returns their paths."""
    json_path, md_path = os.path.join(out_dir, f"{name}.json"), os.path.join(out_dir, f"{name}.md")
    write_json_atomic(json_path, matrix)
    write_text_atomic(md_path, transfer_markdown(matrix))
    return json_path, md_path
