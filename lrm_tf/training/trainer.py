"""Training: the one Keras model whose `train_step` composes the configured objective, and the
fit loop around it (schedules, checkpoints every epoch, resume, CSV and TensorBoard logs).
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Callable

import keras
import tensorflow as tf

from lrm_tf import data as data_lib
from lrm_tf import models
from lrm_tf.config import Objective, Threat, TrainConfig
from lrm_tf.config.training import steps_plan
from lrm_tf.inputs import check_arrays
from lrm_tf.objectives.compose import compute_objective
from lrm_tf.objectives.terms import term_names
from lrm_tf.report.rundir import RunDir
from lrm_tf.training import distribute, health, keras_compat
from lrm_tf.training.checkpoints import CommittedState
from lrm_tf.training.events import EpochEvents
from lrm_tf.training.fit_progress import FitProgress
from lrm_tf.training.schedules import make_schedule


class RobustTrainer(keras.Model):
    """Wraps a classifier `net` for `fit`; `train_step` minimises the configured objective.

    The loss is the sum of the active terms of `lrm_tf.objectives.terms` plus weight decay
    (Madry et al.'s TF1 l2_loss convention). Only `net` is exported. Every logged term is a
    `keras.metrics.Mean` tracker, so `fit` logs epoch means of exactly what was optimised.

    Args:
      net: the classifier, images [B, H, W, C] in [0, 1] -> logits [B, num_classes].
      objective: the training objective.
      num_classes: C.
      weight_decay: wd of wd * sum(w^2) / 2 over conv and dense kernels.
      seed: the step seed is (seed, optimizer step): resumed and distributed runs draw alike.
      threat: the training attack's threat; required when `objective.adversarial`.

    Raises:
      ValueError: adv_train without a threat.
    """

    def __init__(
        self,
        net: keras.Model,
        objective: Objective,
        num_classes: int,
        weight_decay: float = 0.0,
        seed: int = 0,
        threat: Threat | None = None,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if objective.adversarial and threat is None:
            raise ValueError(f"adv_train={objective.adv_train} needs the training attack's threat")
        self.net = net
        self.objective = objective
        self.threat = threat
        self.num_classes = num_classes
        self.weight_decay = weight_decay
        self.seed = seed
        self.term_trackers = {
            name: keras.metrics.Mean(name=name) for name in ["loss", *term_names(objective, weight_decay > 0)]
        }
        self.accuracy_tracker = keras.metrics.SparseCategoricalAccuracy(name="accuracy")
        self.multi_worker = False  # set by build_trainer under MultiWorkerMirroredStrategy

    def call(self, x, training=False):
        return self.net(x, training=training)

    @property
    def metrics(self):
        return [*self.term_trackers.values(), self.accuracy_tracker]

    def _step_seed(self):
        # Stateless randomness keyed on (seed, step): resumed and distributed runs draw the same.
        return tf.stack([tf.constant(self.seed, tf.int64), tf.cast(self.optimizer.iterations, tf.int64)])

    def train_step(self, data):
        x, y = data
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        with tf.GradientTape() as tape:
            out = compute_objective(
                self.objective, self.net, x, y, self.num_classes, self._step_seed(), self.threat
            )
            terms = dict(out.terms)
            total = out.total
            if self.weight_decay:
                terms["weight_decay"] = models.weight_decay_loss(self.net, self.weight_decay)
                total = total + terms["weight_decay"]
            # Per-replica means: dividing by the replica count makes the summed (all-reduced)
            # gradient the gradient of the global-batch mean, as Keras' own compute_loss does.
            scaled = self.optimizer.scale_loss(total / replicas)  # identity unless float16
        grads = tape.gradient(scaled, self.net.trainable_variables)
        self.optimizer.apply_gradients(zip(grads, self.net.trainable_variables))
        terms["loss"] = total
        for name, tracker in self.term_trackers.items():
            tracker.update_state(terms[name])
        self.accuracy_tracker.update_state(y, out.accuracy_logits)
        return self._logs(self.metrics)

    def test_step(self, data):
        x, y = data
        logits = self.net(x, training=False)
        ce = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(y, logits))
        self.term_trackers["loss"].update_state(ce)
        self.accuracy_tracker.update_state(y, logits)
        return self._logs((self.term_trackers["loss"], self.accuracy_tracker))

    def _logs(self, metrics):
        logs = {m.name: m.result() for m in metrics}
        return keras_compat.multiworker_logs(logs) if self.multi_worker else logs


class _EpochExtras(keras.callbacks.Callback):
    """Adds the learning rate to the epoch logs (before metrics.csv is written from them)."""

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:
            opt = self.model.optimizer
            logs["lr"] = float(keras.ops.convert_to_numpy(opt.learning_rate))


class _OneEpochPerFit(keras.callbacks.Callback):
    """Stops `fit` after one epoch: each epoch gets its own dataset (seeded order) while the
    progress output still counts epochs out of the whole run."""

    def on_epoch_end(self, epoch, logs=None):
        self.model.stop_training = True


def build_trainer(
    net: keras.Model,
    objective: Objective,
    num_classes: int,
    cfg: TrainConfig,
    steps_per_epoch: int,
    threat: Threat | None = None,
) -> RobustTrainer:
    """A compiled RobustTrainer: SGD with momentum (or Adam) on the configured schedule.

    Call inside `strategy.scope()`; under MultiWorkerMirroredStrategy it applies the Keras
    workarounds of `keras_compat`.

    Args:
      net: the classifier, images in [0, 1] -> logits [B, num_classes].
      objective: the training objective.
      num_classes: C.
      cfg: optimizer, schedule (lr_values, lr_boundaries, lr_warmup in schedule_unit),
        weight_decay, seed, jit_compile, mixed_precision (float16 adds loss scaling).
      steps_per_epoch: converts epoch-counted boundaries and warm-up into steps.
      threat: the training attack's threat; required when `objective.adversarial`.

    Returns:
      RobustTrainer with its optimizer built (so a checkpoint restores into it).
    """
    trainer = RobustTrainer(
        net, objective, num_classes, weight_decay=cfg.weight_decay, seed=cfg.seed, threat=threat
    )
    schedule = make_schedule(
        cfg.lr_values, cfg.lr_boundaries, cfg.lr_warmup, cfg.schedule_unit, steps_per_epoch
    )
    if cfg.optimizer == "adam":
        optimizer = keras.optimizers.Adam(learning_rate=schedule)
    else:
        optimizer = keras.optimizers.SGD(learning_rate=schedule, momentum=cfg.momentum)
    if cfg.mixed_precision == "mixed_float16":
        # float16 gradients underflow without it; bfloat16 has float32's exponent range.
        optimizer = keras.optimizers.LossScaleOptimizer(optimizer)
    trainer.compile(optimizer=optimizer, jit_compile=cfg.jit_compile)
    strategy = tf.distribute.get_strategy()
    if distribute.is_multi_worker(strategy):
        trainer.multi_worker = True
        keras_compat.apply_multiworker(trainer, strategy)
    # Variables exist before a restore, so the checkpoint restores into them rather than deferring.
    optimizer.build(net.trainable_variables)
    return trainer


def train(
    net_fn: Callable[[], keras.Model],
    objective: Objective,
    arrays: data_lib.Arrays,
    run: RunDir,
    cfg: TrainConfig,
    threat: Threat | None = None,
    strategy: tf.distribute.Strategy | None = None,
    log: Callable[[str], None] = print,
) -> keras.Model:
    """Trains (or resumes training of) the model in `run` and returns the trained `net`.

    Checkpoints hold the weights and optimizer state; the optimizer's step counter says where
    to resume, and the data order depends only on (seed, epoch), so the same command resumes.
    Under a multi-worker strategy only the chief writes `run` (see `lrm_tf.training.distribute`).

    Args:
      net_fn: builds the classifier (called inside the strategy's scope).
      objective: the training objective.
      arrays: the data set (uint8 images, int labels, its DatasetInfo).
      run: the run directory (checkpoints, metrics.csv, tensorboard/).
      cfg: the optimisation settings.
      threat: the TRAINING attack's threat (eps, eps_step, input range, restarts,
        attack_true_labels, attack_xla_step); required when `objective.adversarial`.
      strategy: a tf.distribute strategy (default: the current one); the global batch
        cfg.batch_size is split across its replicas.
      log: receives progress lines ("resuming from ...").

    Returns:
      the trained keras.Model.

    Raises:
      DivergenceError: the loss became non-finite (the last good checkpoint stays).
      NotLearningError: the run ended at chance accuracy or on a loss mostly weight decay and
        not falling (`lrm_tf.training.health`; the checkpoints stay).
      ValueError: the batch is larger than the training set, adv_train without a threat, or
        images that are not uint8 of the data set's shape (`lrm_tf.inputs.check_arrays`).
    """
    check_arrays(arrays, where="training.train arrays")
    strategy = strategy or tf.distribute.get_strategy()
    num_train = min(len(arrays.y_train), cfg.train_limit or len(arrays.y_train))
    steps_per_epoch, total_steps = steps_plan(num_train, cfg)
    with strategy.scope():
        net = net_fn()
        trainer = build_trainer(net, objective, arrays.info.num_classes, cfg, steps_per_epoch, threat)
        ckpt = tf.train.Checkpoint(net=net, optimizer=trainer.optimizer)
    # Multi-worker: only the chief writes the run directory; every worker must still save (a
    # save may run collectives), so the others write checkpoints and logs to a scratch folder.
    scratch = (
        None
        if distribute.is_chief(strategy)
        else tempfile.mkdtemp(prefix=f"lrm_tf_worker{distribute.task(strategy)[1]}_")
    )
    out = RunDir(scratch) if scratch else run
    steps = health.StepLog() if health.applies(cfg, arrays, distribute.is_multi_worker(strategy)) else None
    try:
        _fit(net, trainer, ckpt, arrays, run, out, cfg, steps_per_epoch, total_steps, log, steps)
    finally:
        if scratch:
            shutil.rmtree(scratch, ignore_errors=True)
    if steps is not None:
        final_step = int(trainer.optimizer.iterations.numpy())
        warmup = health.warmup_steps(cfg, steps_per_epoch)
        health.judge(steps.rows, arrays.y_train[:num_train], cfg, objective.adversarial, warmup, final_step)
    return net


def _fit(net, trainer, ckpt, arrays, run, out, cfg, steps_per_epoch, total_steps, log, steps=None):
    manager = tf.train.CheckpointManager(ckpt, out.checkpoints, max_to_keep=2)
    # Every worker resumes from the chief's checkpoints.
    latest = manager.latest_checkpoint if out is run else tf.train.latest_checkpoint(run.checkpoints)
    if latest:
        ckpt.restore(latest).assert_existing_objects_matched()
    start = int(trainer.optimizer.iterations.numpy())
    # Before anything else: metrics.csv now holds exactly the rows of the restored checkpoint.
    committed = CommittedState(
        manager, out.metrics_csv, steps_per_epoch, total_steps, cfg.checkpoint_every_steps, latest, start
    )
    if start:
        log(f"resuming from {latest} at step {start} of {total_steps}")
    if start >= total_steps:
        return

    # fit's own output is off: progress goes through report/progress (training/fit_progress.py).
    verbose = cfg.verbose if cfg.verbose >= 0 else 1
    shown = [FitProgress(steps_per_epoch, total_steps, batches=verbose == 1)] if verbose else []
    callbacks = [
        _EpochExtras(),  # first: the epoch's line shows the learning rate
        *shown,
        committed,  # saves at epoch ends, then writes metrics.csv
        EpochEvents(out, cfg),  # then TensorBoard logs metrics.csv's row (training/events.py)
    ]
    callbacks += [*([steps] if steps is not None else []), _OneEpochPerFit()]
    n_epochs = math.ceil(total_steps / steps_per_epoch)
    try:
        for epoch in range(start // steps_per_epoch, n_epochs):
            done_in_epoch = start - epoch * steps_per_epoch if epoch == start // steps_per_epoch else 0
            steps = min(steps_per_epoch, total_steps - epoch * steps_per_epoch) - done_in_epoch
            ds = data_lib.train_dataset(
                arrays, cfg.batch_size, seed=cfg.seed, epoch=epoch, limit=cfg.train_limit or None
            )
            ds = ds.skip(done_in_epoch).take(steps)
            trainer.fit(
                ds, epochs=n_epochs, initial_epoch=epoch, callbacks=callbacks, shuffle=False, verbose=0
            )
    finally:
        for callback in shown:  # an epoch that raised: end its line, stop its timer
            callback.close()
