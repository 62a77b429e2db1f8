"""Evaluation: accuracy under each named attack, results.json and the results.md table."""

from __future__ import annotations

import dataclasses
import datetime
import time
from typing import Callable, Dict, Optional, Sequence

import numpy as np
import tensorflow as tf

from lrm_tf.report.rundir import RunDir, write_json_atomic, write_text_atomic


@dataclasses.dataclass(frozen=True)
class ThreatModel:
    """Attack parameters shared by an evaluation (input scale of the model, [0, 1] by default)."""
    eps: float
    eps_step: float
    restarts: int = 1
    clip_min: float = 0.0
    clip_max: float = 1.0
    use_true_labels: bool = True
    spsa_samples: int = 128
    spsa_examples: int = 0  # SPSA on the first N examples only (0: all); LRM uses 1,000
    xla_step: bool = False  # XLA-compile each PGD step (the loop itself stays uncompiled)


def _as_model_fn(model):
    """Keras models run in inference mode; SavedModels and plain callables are called as they are."""
    import keras
    if isinstance(model, keras.Model):
        return lambda x: model(x, training=False)
    return model


def build_threat_attack(model, attack_name: str, threat: ThreatModel, images, labels):
    """(model_fn, attack, images, labels) for one attack; SPSA keeps only the first
    `threat.spsa_examples` examples (it costs samples x iterations forward passes each)."""
    from lrm_tf import attacks
    spec = attacks.parse_attack(attack_name)
    if spec.family == "spsa" and threat.spsa_examples:
        images, labels = images[:threat.spsa_examples], labels[:threat.spsa_examples]
    model_fn = _as_model_fn(model)
    attack = attacks.build_attack(
        spec, model_fn, eps=threat.eps, eps_step=threat.eps_step, clip_min=threat.clip_min,
        clip_max=threat.clip_max, restarts=threat.restarts,
        use_true_labels=threat.use_true_labels, spsa_samples=threat.spsa_samples,
        jit_compile_step=threat.xla_step)
    return model_fn, attack, images, labels


def map_batches(per_replica_fn, images: np.ndarray, labels: np.ndarray, batch_size: int,
                seed: int, strategy: tf.distribute.Strategy, combine):
    """Yields (end index, value) per batch: `per_replica_fn(x, y, seed)` run on the batch split
    across the replicas of `strategy` (contiguous shards in replica order), the per-replica
    results merged by `combine(strategy, per_replica)`. Batch i uses the seed (seed, i), and
    attacks key their randomness per example, so values do not depend on the strategy."""
    n = len(labels)
    for i, start in enumerate(range(0, n, batch_size)):
        x = tf.convert_to_tensor(images[start:start + batch_size], tf.float32)
        y = tf.convert_to_tensor(labels[start:start + batch_size], tf.int64)
        step_seed = tf.constant([seed, i], tf.int64)
        if strategy.num_replicas_in_sync > 1:
            dist = strategy.experimental_distribute_values_from_function(
                lambda ctx: _shard(ctx, x, y))
            per_replica = strategy.run(lambda xy, s: per_replica_fn(xy[0], xy[1], s),
                                       args=(dist, step_seed))
            yield min(start + batch_size, n), combine(strategy, per_replica)
        else:
            yield min(start + batch_size, n), per_replica_fn(x, y, step_seed)


def attack_accuracy(model, images: np.ndarray, labels: np.ndarray, attack_name: str,
                    threat: ThreatModel, batch_size: int = 500, seed: int = 0,
                    strategy: Optional[tf.distribute.Strategy] = None, progress: bool = True):
    """Accuracy of `model` on adversarial examples of `attack_name` made from (images, labels).

    Each batch is attacked by one compiled function run under `strategy` (the batch is split
    across replicas). Returns (accuracy, number of examples).
    """
    import keras
    strategy = strategy or tf.distribute.get_strategy()
    model_fn, attack, images, labels = build_threat_attack(model, attack_name, threat, images,
                                                           labels)

    @tf.function
    def correct_on_replica(x, y, step_seed):
        x_adv = attack(x, y, step_seed)
        pred = tf.argmax(model_fn(x_adv), axis=1, output_type=tf.int64)
        return tf.reduce_sum(tf.cast(pred == tf.cast(y, tf.int64), tf.int64))

    n = len(labels)
    bar = keras.utils.Progbar(n, unit_name="example", verbose=1 if progress else 0)
    correct = 0
    total_correct = lambda s, v: s.reduce(tf.distribute.ReduceOp.SUM, v, axis=None)
    for done, batch_correct in map_batches(correct_on_replica, images, labels, batch_size, seed,
                                           strategy, total_correct):
        correct += int(batch_correct)
        bar.update(done, values=[("accuracy", correct / done)])
    return correct / max(n, 1), n


def _shard(ctx, x, y):
    """This replica's contiguous share of a global batch (global order is kept)."""
    n = ctx.num_replicas_in_sync
    size = -(-int(x.shape[0]) // n)
    lo = ctx.replica_id_in_sync_group * size
    return x[lo:lo + size], y[lo:lo + size]


def evaluate_attacks(model, images: np.ndarray, labels: np.ndarray, attack_names: Sequence[str],
                     threat: ThreatModel, batch_size: int = 500, seed: int = 0,
                     strategy: Optional[tf.distribute.Strategy] = None,
                     log: Callable[[str], None] = print) -> Dict[str, dict]:
    """results.json entries: per attack, accuracy, number of examples, parameters and time."""
    from lrm_tf import attacks
    results = {}
    for name in attack_names:
        spec = attacks.parse_attack(name)
        log(f"{name}:")
        t0 = time.time()
        acc, n = attack_accuracy(model, images, labels, name, threat, batch_size, seed, strategy)
        params = {"family": spec.family}
        if spec.family != "clean":
            params.update(eps=threat.eps, steps=spec.steps, loss=spec.loss, norm=spec.norm,
                          rand_init=spec.rand_init, target=spec.target)
            if spec.steps > 1:
                params["eps_step"] = threat.eps_step
            if spec.rand_init:
                params["restarts"] = threat.restarts
        results[name] = {"accuracy": acc, "examples": n, "params": params,
                         "seconds": round(time.time() - t0, 2)}
    return results


def results_markdown(results: Dict[str, dict], title: str = "Results") -> str:
    """A table laid out like the papers': one row per attack, accuracy in percent."""
    lines = [f"# {title}", "", "| attack | accuracy | examples | parameters |",
             "|---|---:|---:|---|"]
    for name, r in results.items():
        params = ", ".join(f"{k}={v}" for k, v in sorted(r.get("params", {}).items()))
        lines.append(f"| {name} | {100 * r['accuracy']:.2f}% | {r['examples']} | {params} |")
    return "\n".join(lines) + "\n"


def write_results(run: RunDir, results: Dict[str, dict], title: str):
    write_json_atomic(run.results_json, results)
    write_text_atomic(run.results_md, results_markdown(results, title))


def print_table(results: Dict[str, dict], log: Callable[[str], None] = print):
    width = max([len(n) for n in results] + [6])
    log(f"{'attack':<{width}}  accuracy  examples")
    for name, r in results.items():
        log(f"{name:<{width}}  {100 * r['accuracy']:7.2f}%  {r['examples']:>8}")


def timestamp() -> str:
    return datetime.datetime.now().isoformat(timespec="seconds")
