"""Evaluation: accuracy under each named attack, results.json and the results.md table.

The building blocks every evaluation tool shares live here: `attack_accuracy` (accuracy of
a model under one attack), `adversarial_examples` (the images that accuracy is measured on)
and `accuracy_point` (one measurement as a JSON record). Curves, the audit, transfer
matrices and the analyses are built from them, so they all measure the same thing.

Attacks: Goodfellow et al. 2015 (FGSM), Madry et al. 2018 (PGD), Carlini & Wagner 2017 (the
CW loss), Uesato et al. 2018 (SPSA), Tramèr et al. 2018 (R+FGSM), Kurakin et al. 2017
(Step-LL, Iter-LL); see `lrm_tf.attacks`.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Callable, Sequence

import numpy as np
import tensorflow as tf

from lrm_tf import attacks
from lrm_tf.attacks import AttackSpec, ensemble
from lrm_tf.config import SpsaOptions, Threat
from lrm_tf.eval import worst_case
from lrm_tf.eval.batching import Outcome, map_batches
from lrm_tf.inputs import check_images
from lrm_tf.report import progress as progress_lines
from lrm_tf.report import tensorboard
from lrm_tf.report.progress import Report
from lrm_tf.report.rundir import RunDir
from lrm_tf.report.writer import write_report

Attack = str | AttackSpec  # an attack name or a parsed spec


def attack_spec(attack: Attack) -> AttackSpec:
    """`attack` as an AttackSpec (a name is parsed; ValueError if it is bad)."""
    return attacks.parse_attack(attack) if isinstance(attack, str) else attack


def _attack_setup(model, attack, threat: Threat, images, labels, spsa=None):
    """(logits_fn, attack callable, images, labels): the examples are those the attack's
    family evaluates (SPSA: the first `spsa.spsa_examples`, since each costs samples x
    iterations forward passes)."""
    spec = attack_spec(attack)
    images = check_images(images, threat.clip_min, threat.clip_max, where="evaluation images")
    limit = attacks.evaluated_examples(spec, spsa)
    if limit:
        images, labels = images[:limit], labels[:limit]
    logits_fn = attacks.as_logits_fn(model)
    return logits_fn, attacks.build_attack(spec, logits_fn, threat, spsa), images, labels


def attack_accuracy(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    attack: Attack,
    threat: Threat,
    batch_size: int = 500,
    seed: int = 0,
    strategy: tf.distribute.Strategy | None = None,
    progress: bool | Report = True,
    spsa: SpsaOptions | None = None,
) -> tuple[float, int]:
    """Accuracy of `model` on the adversarial examples of `attack` made from (images, labels).

    Each batch is attacked by one compiled function run under `strategy` (the batch is split
    across replicas). The accuracy does not depend on `batch_size` nor on the replica count:
    every batch gets the same seed and the attacks key their randomness per example.

    Args:
      model: what `lrm_tf.attacks.build_attack` accepts: a Keras model (run in inference
        mode), a loaded SavedModel (callable or not: its 'serving_default' signature is
        used), a SavedModel signature, or a callable images -> logits.
      images: float [N, H, W, C] in [0, 1] (the threat's range); labels: int [N].
      attack: an attack name ('pgd20_xent') or an `AttackSpec`.
      threat: eps, step, range, restarts and label choice (`lrm_tf.config.Threat`).
      batch_size: global evaluation batch size.
      seed: every batch is attacked with the seed (seed, 0).
      strategy: a `tf.distribute.Strategy` (default: the current one).
      progress: True: a progress line with the running accuracy (`lrm_tf.report.progress`);
        False: none; a report(fraction, note) (a `Task` or a `part` of one): called after
        each batch.
      spsa: SPSA's options (None: `SpsaOptions()`); SPSA evaluates the first
        `spsa.spsa_examples` examples only.

    Returns:
      (accuracy in [0, 1], number of examples evaluated).

    Raises:
      ValueError: a bad attack name or option; images of another dtype than float or uint8
        (converted from [0, 255]), or outside the threat's range (`lrm_tf.inputs`).
    """
    outcome = attack_outcome(
        model, images, labels, attack, threat, batch_size, seed, strategy, progress, spsa, log=_quiet
    )
    n = len(outcome.correct)
    return float(np.sum(outcome.correct)) / max(n, 1), n


def _quiet(_line: str) -> None:
    pass


def attack_outcome(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    attack: Attack,
    threat: Threat,
    batch_size: int = 500,
    seed: int = 0,
    strategy: tf.distribute.Strategy | None = None,
    progress: bool | Report = True,
    spsa: SpsaOptions | None = None,
    keep_adversarial: bool = False,
    log: Callable[[str], None] = print,
) -> Outcome:
    """Per-example result of `attack`: what `attack_accuracy` averages.

    An ensemble (`autoattack`, `autoattack_rand`: `lrm_tf.attacks.ensemble`) runs stage by
    stage on the points still robust (`lrm_tf.eval.autoattack.run_ensemble`); any other
    attack runs on every example. Both batch through `map_batches`.

    Args:
      model, images, labels, attack, threat, batch_size, seed, strategy, progress, spsa: as
        for `attack_accuracy`.
      keep_adversarial: also return the adversarial examples.
      log: where an ensemble's stage lines and warnings go.

    Returns:
      An `Outcome` for the examples the attack evaluates (SPSA: the first
      `spsa.spsa_examples`).

    Raises:
      ValueError: as for `attack_accuracy`.
    """
    strategy = strategy or tf.distribute.get_strategy()
    spec = attack_spec(attack)
    if ensemble.stages(spec) is not None:
        from lrm_tf.eval import autoattack

        images = check_images(images, threat.clip_min, threat.clip_max, where="evaluation images")
        return autoattack.run_ensemble(
            model, images, labels, spec, threat, batch_size, seed, strategy, spsa,
            keep_adversarial, progress, log,
        )  # fmt: skip
    logits_fn, attack_fn, images, labels = _attack_setup(model, spec, threat, images, labels, spsa)

    def per_example(x, y, step_seed):
        x_adv = attack_fn(x, y, step_seed)
        correct = tf.argmax(logits_fn(x_adv), axis=1, output_type=tf.int64) == y
        out = {"correct": tf.cast(correct, tf.int32)}  # gathered across replicas: no bool gather on CPU
        if keep_adversarial:
            out["x_adv"] = tf.cast(x_adv, tf.float32)
        return out

    n = len(labels)
    correct, adversarial, right = [], [], 0
    with progress_lines.reporting(spec.name, progress) as report:
        for done, values in map_batches(per_example, images, labels, batch_size, seed, strategy):
            correct.append(values["correct"] > 0)
            adversarial += [values["x_adv"]] if keep_adversarial else []
            right += int(np.sum(correct[-1]))
            report(done / n, f"{done}/{n} examples, accuracy {100 * right / done:.2f}%")
    x_adv = None
    if keep_adversarial:
        empty = np.zeros((0, *np.shape(images)[1:]), np.float32)
        x_adv = np.concatenate(adversarial) if adversarial else empty
    return Outcome(np.concatenate(correct) if correct else np.zeros([0], bool), x_adv)


def adversarial_examples(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    attack: Attack,
    threat: Threat,
    batch_size: int = 500,
    seed: int = 0,
    strategy: tf.distribute.Strategy | None = None,
    spsa: SpsaOptions | None = None,
    progress: bool | Report = False,
) -> tuple[np.ndarray, np.ndarray]:
    """The adversarial images that `attack_accuracy` scores with the same arguments.

    Same attack construction, same batching and the same seed (seed, 0) for every batch.

    Args:
      model, images, labels, attack, threat, batch_size, seed, strategy, spsa, progress: as
        for `attack_accuracy`.

    Returns:
      (x_adv float32 [n, H, W, C], labels [n]) of the examples actually attacked: n = N,
      except for SPSA, which attacks the first `spsa.spsa_examples`.
    """
    outcome = attack_outcome(
        model, images, labels, attack, threat, batch_size, seed, strategy, progress, spsa, True, log=_quiet
    )
    return outcome.x_adv, np.asarray(labels)[: len(outcome.correct)]


def accuracy_point(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    attack: Attack,
    threat: Threat,
    batch_size: int = 500,
    seed: int = 0,
    strategy: tf.distribute.Strategy | None = None,
    spsa: SpsaOptions | None = None,
    progress: bool | Report = False,
    **fields,
) -> dict:
    """One `attack_accuracy` measurement as a JSON-ready record.

    Args:
      model, images, labels, attack, threat, batch_size, seed, strategy, spsa, progress: as
        for `attack_accuracy` (no progress by default).
      **fields: extra entries of the record (e.g. the curve's x value).

    Returns:
      {**fields, 'attack': name, 'eps', 'eps_step', 'restarts' (the threat's), 'accuracy',
      'examples', 'seconds'}.
    """
    spec = attack_spec(attack)
    t0 = time.time()
    acc, n = attack_accuracy(
        model, images, labels, spec, threat, batch_size, seed, strategy, progress=progress, spsa=spsa
    )
    return {
        **fields,
        "attack": spec.name,
        "eps": threat.eps,
        "eps_step": threat.eps_step,
        "restarts": threat.restarts,
        "accuracy": acc,
        "examples": n,
        "seconds": round(time.time() - t0, 2),
    }


def evaluate_attacks(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    attack_names: Sequence[str],
    threat: Threat,
    batch_size: int = 500,
    seed: int = 0,
    strategy: tf.distribute.Strategy | None = None,
    spsa: SpsaOptions | None = None,
    log: Callable[[str], None] = print,
    save_adversarial: str | None = None,
) -> worst_case.EvalResults:
    """Accuracy under each attack, and under all of them (worst_case): results.json's rows.

    Args:
      model, images, labels, threat, batch_size, seed, strategy, spsa: as for
        `attack_accuracy` (images float [N, H, W, C] in [0, 1]).
      attack_names: names such as 'clean', 'fgsm_xent', 'pgd20_cw', 'spsa100', 'autoattack'.
      log: where an ensemble's stage lines and warnings go; the progress of each attack is
        a `lrm_tf.report.progress.Task` on standard output.
      save_adversarial: a directory: each attack's adversarial examples are written there
        as adversarial_<name>.npz (`lrm_tf.eval.worst_case.write_adversarial`).

    Returns:
      An `EvalResults` dict {name: {'accuracy', 'examples', 'params' (family, eps, steps,
      loss, norm, rand_init, target, eps_step for multi-step, restarts for random attacks;
      an ensemble's: family, eps, norm, attacks), 'seconds', 'per_example'}} in the order of
      `attack_names`, then 'worst_case' (the per-example AND of all rows; Croce & Hein 2020,
      arXiv:2003.01690); an ensemble's row also has 'stages' and 'warnings'. Its
      `per_example` attribute holds each row's bool [n] correctness.

    Raises:
      ValueError: a bad attack name.
    """
    results = worst_case.EvalResults()
    for name in attack_names:
        spec = attacks.parse_attack(name)
        t0 = time.time()
        keep = bool(save_adversarial) and spec.family != "clean"
        outcome = attack_outcome(
            model, images, labels, spec, threat, batch_size, seed, strategy, True, spsa, keep, log
        )
        n = len(outcome.correct)
        stages = ensemble.stages(spec)
        params = {"family": spec.family}
        if stages is not None:
            params.update(eps=threat.eps, norm=spec.norm, attacks=[s.attack for s in stages])
        elif spec.family != "clean":
            params.update(
                eps=threat.eps,
                steps=spec.steps,
                loss=spec.loss,
                norm=spec.norm,
                rand_init=spec.rand_init,
                target=spec.target,
            )
            if spec.steps > 1:
                params["eps_step"] = threat.eps_step
            if spec.rand_init:
                params["restarts"] = threat.restarts
        results[name] = {
            "accuracy": float(np.sum(outcome.correct)) / max(n, 1),
            "examples": n,
            "params": params,
            "seconds": round(time.time() - t0, 2),
            "per_example": worst_case.per_example_ref(name),
            **outcome.details,
        }
        results.per_example[name] = outcome.correct
        if keep:
            worst_case.write_adversarial(save_adversarial, name, outcome.x_adv, labels[:n], outcome.correct)
    if results.per_example:
        row, robust = worst_case.worst_case_row(results.per_example)
        results[worst_case.WORST_CASE] = row
        results.per_example[worst_case.WORST_CASE] = robust
    return results


def results_markdown(results: dict[str, dict], title: str = "Results") -> str:
    """A table laid out like the papers': one row per attack, accuracy in percent.

    Args:
      results: `evaluate_attacks`' output.
      title: the heading.

    Returns:
      The Markdown text.
    """
    lines = [f"# {title}", "", "| attack | accuracy | examples | parameters |", "|---|---:|---:|---|"]
    for name, r in results.items():
        params = ", ".join(f"{k}={v}" for k, v in sorted(r.get("params", {}).items()))
        lines.append(f"| {name} | {100 * r['accuracy']:.2f}% | {r['examples']} | {params} |")
    lines += worst_case.markdown_notes(results)
    return "\n".join(lines) + "\n"


def write_results(run: RunDir, results: dict[str, dict], title: str) -> tuple[str, str]:
    """Writes results.json and results.md in the run directory (atomically), and each row's
    accuracy to its TensorBoard logs (`lrm_tf.report.tensorboard.write_results`).

    Args:
      run: the run directory.
      results: `evaluate_attacks`' output.
      title: the heading of results.md.

    Returns:
      (json_path, md_path); results_per_example.npz is written beside them when `results`
      carries per-example arrays (an `EvalResults`).
    """
    per_example = getattr(results, "per_example", None)
    if per_example:
        worst_case.write_per_example(run.path, per_example)
    paths = write_report(run.path, "results", results, results_markdown(results, title))
    tensorboard.write_results(run.path, results)
    return paths


def print_table(results: dict[str, dict], log: Callable[[str], None] = print) -> None:
    """The results as an aligned text table (attack, accuracy in percent, examples)."""
    width = max([len(n) for n in results] + [6])
    log(f"{'attack':<{width}}  accuracy  examples")
    for name, r in results.items():
        log(f"{name:<{width}}  {100 * r['accuracy']:7.2f}%  {r['examples']:>8}")


def timestamp() -> str:
    """The local time, to the second, in ISO 8601."""
    return datetime.datetime.now().isoformat(timespec="seconds")
