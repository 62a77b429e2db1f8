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
from collections.abc import Callable, Iterator, Sequence

import numpy as np
import tensorflow as tf

from lrm_tf import attacks
from lrm_tf.attacks import AttackSpec
from lrm_tf.config import SpsaOptions, Threat
from lrm_tf.inputs import check_images
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


def map_batches(
    per_example_fn,
    images: np.ndarray,
    labels: np.ndarray,
    batch_size: int,
    seed: int,
    strategy: tf.distribute.Strategy,
) -> Iterator[tuple[int, np.ndarray]]:
    """Runs `per_example_fn` batch by batch under `strategy`; values come back per example.

    Every batch uses the same seed (seed, 0), and attacks key their randomness per example
    (`lrm_tf.attacks._common`), so an example's value depends neither on its batch, nor on
    its position, nor on the replica count. Under several replicas a batch is padded to a
    multiple of the replica count with copies of its last example, so that every replica
    gets a share of the same, non-empty size (a model run on an empty share fails with oneDNN:
    "input depth must be evenly divisible by filter depth"); the copies are dropped from
    what is yielded.

    Args:
      per_example_fn: (x float32 [b, ...], y int64 [b], seed int64 [2]) -> a tensor [b, ...],
        one row per example, each row a function of its own example only; traced once,
        with an unknown batch size, for all the batches.
      images: float [N, H, W, C] in the model's input scale (numpy or tensor; cast to
        float32); labels: int [N].
      batch_size: global batch size (>= 1), split over the replicas in contiguous shards in
        replica order.
      seed: the evaluation seed.
      strategy: a `tf.distribute.Strategy`.

    Yields:
      (end index of the batch, numpy values [b, ...] of the batch's examples, in order).

    Raises:
      ValueError: batch_size < 1.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    n = len(labels)
    replicas = strategy.num_replicas_in_sync
    step = None
    step_seed = tf.constant([seed, 0], tf.int64)
    for start in range(0, n, batch_size):
        end = min(start + batch_size, n)
        x = tf.cast(images[start:end], tf.float32)
        y = tf.cast(labels[start:end], tf.int64)
        x, y = _pad_to_multiple(x, y, replicas)
        if step is None:
            step = _compile(per_example_fn, strategy, x.shape[1:])
        yield end, np.asarray(step(x, y, step_seed))[: end - start]


def _compile(per_example_fn, strategy: tf.distribute.Strategy, example_shape):
    """`per_example_fn` traced once for any batch size: (x, y, seed) -> values [b, ...].

    Under several replicas, each replica runs it on its contiguous share of the batch (b is
    a multiple of the replica count), and the shares are gathered in replica order, i.e. in
    batch order.
    """
    if strategy.num_replicas_in_sync == 1:
        fn = per_example_fn
    else:

        def on_replica(x, y, seed):
            ctx = tf.distribute.get_replica_context()
            size = tf.shape(x)[0] // ctx.num_replicas_in_sync
            lo = ctx.replica_id_in_sync_group * size
            return per_example_fn(x[lo : lo + size], y[lo : lo + size], seed)

        def fn(x, y, seed):
            return strategy.gather(strategy.run(on_replica, args=(x, y, seed)), axis=0)

    return tf.function(fn).get_concrete_function(
        tf.TensorSpec([None, *example_shape], tf.float32),
        tf.TensorSpec([None], tf.int64),
        tf.TensorSpec([2], tf.int64),
    )


def _pad_to_multiple(x, y, replicas: int):
    """(x, y) with copies of the last example appended up to a multiple of `replicas`."""
    size = int(x.shape[0])
    padding = -size % replicas
    if not padding:
        return x, y
    index = tf.concat([tf.range(size), tf.fill([padding], size - 1)], axis=0)
    return tf.gather(x, index), tf.gather(y, index)


def attack_accuracy(
    model,
    images: np.ndarray,
    labels: np.ndarray,
    attack: Attack,
    threat: Threat,
    batch_size: int = 500,
    seed: int = 0,
    strategy: tf.distribute.Strategy | None = None,
    progress: bool = True,
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
      progress: show a Keras progress bar.
      spsa: SPSA's options (None: `SpsaOptions()`); SPSA evaluates the first
        `spsa.spsa_examples` examples only.

    Returns:
      (accuracy in [0, 1], number of examples evaluated).

    Raises:
      ValueError: a bad attack name or option; images of another dtype than float or uint8
        (converted from [0, 255]), or outside the threat's range (`lrm_tf.inputs`).
    """
    import keras

    strategy = strategy or tf.distribute.get_strategy()
    logits_fn, attack_fn, images, labels = _attack_setup(model, attack, threat, images, labels, spsa)

    def correct_per_example(x, y, step_seed):
        x_adv = attack_fn(x, y, step_seed)
        correct = tf.argmax(logits_fn(x_adv), axis=1, output_type=tf.int64) == y
        return tf.cast(correct, tf.int32)  # gathered across replicas: no bool gather on CPU

    n = len(labels)
    bar = keras.utils.Progbar(n, unit_name="example", verbose=1 if progress else 0)
    correct = 0
    for done, batch_correct in map_batches(correct_per_example, images, labels, batch_size, seed, strategy):
        correct += int(np.sum(batch_correct))
        bar.update(done, values=[("accuracy", correct / done)])
    return correct / max(n, 1), n


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
) -> tuple[np.ndarray, np.ndarray]:
    """The adversarial images that `attack_accuracy` scores with the same arguments.

    Same attack construction, same batching and the same seed (seed, 0) for every batch.

    Args:
      model, images, labels, attack, threat, batch_size, seed, strategy, spsa: as for
        `attack_accuracy`.

    Returns:
      (x_adv float32 [n, H, W, C], labels [n]) of the examples actually attacked: n = N,
      except for SPSA, which attacks the first `spsa.spsa_examples`.
    """
    strategy = strategy or tf.distribute.get_strategy()
    _, attack_fn, images, labels = _attack_setup(model, attack, threat, images, labels, spsa)
    batches = [
        np.asarray(x_adv, np.float32)
        for _, x_adv in map_batches(attack_fn, images, labels, batch_size, seed, strategy)
    ]
    shape = (0, *np.shape(images)[1:])
    adv = np.concatenate(batches) if batches else np.zeros(shape, np.float32)
    return adv, np.asarray(labels)


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
    **fields,
) -> dict:
    """One `attack_accuracy` measurement (no progress bar) as a JSON-ready record.

    Args:
      model, images, labels, attack, threat, batch_size, seed, strategy, spsa: as for
        `attack_accuracy`.
      **fields: extra entries of the record (e.g. the curve's x value).

    Returns:
      {**fields, 'attack': name, 'eps', 'eps_step', 'restarts' (the threat's), 'accuracy',
      'examples', 'seconds'}.
    """
    spec = attack_spec(attack)
    t0 = time.time()
    acc, n = attack_accuracy(
        model, images, labels, spec, threat, batch_size, seed, strategy, progress=False, spsa=spsa
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
) -> dict[str, dict]:
    """Accuracy under each attack: the entries of results.json.

    Args:
      model, images, labels, threat, batch_size, seed, strategy, spsa: as for
        `attack_accuracy` (images float [N, H, W, C] in [0, 1]).
      attack_names: names such as 'clean', 'fgsm_xent', 'pgd20_cw', 'spsa100'.
      log: where the progress lines go.

    Returns:
      {name: {'accuracy', 'examples', 'params' (family, eps, steps, loss, norm, rand_init,
      target, eps_step for multi-step, restarts for random attacks), 'seconds'}}, in the
      order of `attack_names`.

    Raises:
      ValueError: a bad attack name.
    """
    results = {}
    for name in attack_names:
        spec = attacks.parse_attack(name)
        log(f"{name}:")
        t0 = time.time()
        acc, n = attack_accuracy(model, images, labels, spec, threat, batch_size, seed, strategy, spsa=spsa)
        params = {"family": spec.family}
        if spec.family != "clean":
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
            "accuracy": acc,
            "examples": n,
            "params": params,
            "seconds": round(time.time() - t0, 2),
        }
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
    return "\n".join(lines) + "\n"


def write_results(run: RunDir, results: dict[str, dict], title: str) -> tuple[str, str]:
    """Writes results.json and results.md in the run directory (atomically).

    Args:
      run: the run directory.
      results: `evaluate_attacks`' output.
      title: the heading of results.md.

    Returns:
      (json_path, md_path).
    """
    return write_report(run.path, "results", results, results_markdown(results, title))


def print_table(results: dict[str, dict], log: Callable[[str], None] = print) -> None:
    """The results as an aligned text table (attack, accuracy in percent, examples)."""
    width = max([len(n) for n in results] + [6])
    log(f"{'attack':<{width}}  accuracy  examples")
    for name, r in results.items():
        log(f"{name:<{width}}  {100 * r['accuracy']:7.2f}%  {r['examples']:>8}")


def timestamp() -> str:
    """The local time, to the second, in ISO 8601."""
    return datetime.datetime.now().isoformat(timespec="seconds")
