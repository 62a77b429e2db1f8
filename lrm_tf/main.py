"""The one entry point: `python -m lrm_tf.main --flagfile=flags/<experiment>.cfg [--flag=value ...]`.

Flags are defined and validated here only; everything below takes plain Python arguments.
A bad flag exits with status 2 and one line naming the flag and what is allowed.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of results

import contextlib
import functools
import shutil
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS

# ----------------------------------------------------------------------------- what and where
flags.DEFINE_enum("mode", "train",
                  ["train", "eval", "transfer", "analyze", "audit", "compare", "export"],
                  "train (then evaluate and export), eval, transfer (black-box matrix), analyze "
                  "(the papers' figures), audit (gradient-masking checks), compare (ours vs "
                  "published), or export")
flags.DEFINE_list("compare_runs", [], "--mode=compare: run directories to set beside the papers' numbers")
flags.DEFINE_string("model_dir", "runs/default", "the run directory")
flags.DEFINE_bool("export", True, "after training, write saved_model/ and model.keras (off: dry runs)")
flags.DEFINE_bool("overwrite", False, "replace a finished run in --model_dir instead of refusing")
flags.DEFINE_string("load_from", "", "run directory or SavedModel to evaluate or analyze (default: "
                    "--model_dir); for --mode=transfer a comma-separated list of source models")
# ----------------------------------------------------------------------------- data
flags.DEFINE_string("dataset", "digits",
                    "mnist, cifar10, cifar100, svhn_cropped, or digits (embedded 8x8, offline)")
flags.DEFINE_string("data_dir", "", "a TFDS data directory")
flags.DEFINE_string("local_data", "", "a folder with the upstream files (MNIST idx .gz, "
                    "cifar-10-batches-py/, cifar-100-python/, SVHN *_32x32.mat)")
flags.DEFINE_integer("synthetic_data", 0, "use N random training images of the dataset's shape "
                     "(and N/2 test images) instead of real data: dry runs and tests")
flags.DEFINE_bool("svhn_extra", False, "svhn_cropped: train on train + extra (604,388 images, "
                  "as LRM does) instead of train (73,257)")
flags.DEFINE_integer("train_limit", 0, "train on the first N training examples only (0: all)")
# ----------------------------------------------------------------------------- model
flags.DEFINE_string("model", "mnist_cnn", "mnist_cnn, resnet_simple, resnet18, resnet8, wide_resnet")
flags.DEFINE_integer("depth", 28, "wide_resnet depth (28, 32, 34, ...)")
flags.DEFINE_integer("width", 10, "wide_resnet width factor")
# ----------------------------------------------------------------------------- optimisation
flags.DEFINE_integer("train_epochs", 1, "epochs to train")
flags.DEFINE_integer("train_steps", 0, "steps to train; overrides --train_epochs when > 0")
flags.DEFINE_integer("batch_size", 128, "global batch size (split across replicas)")
flags.DEFINE_integer("seed", 0, "seed of initialisation, data order, augmentation and attacks")
flags.DEFINE_list("lr_values", ["0.1", "0.01", "0.001"], "learning rates, one more than boundaries")
flags.DEFINE_list("lr_boundaries", ["100", "150"], "where the learning rate changes")
flags.DEFINE_float("lr_warmup", 0, "linear warm-up length to lr_values[0]")
flags.DEFINE_enum("schedule_unit", "epochs", ["epochs", "steps"],
                  "unit of --lr_boundaries and --lr_warmup")
flags.DEFINE_enum("optimizer", "momentum", ["momentum", "adam"],
                  "SGD with momentum (CIFAR/SVHN papers) or Adam (Madry's MNIST code)")
flags.DEFINE_float("momentum", 0.9, "SGD momentum (--optimizer=momentum)")
flags.DEFINE_float("weight_decay", 2e-4, "weight decay, TF1 l2_loss convention: wd * sum(w^2) / 2")
flags.DEFINE_integer("checkpoint_every_steps", 0, "extra checkpoints every N steps (0: every epoch only)")
# ----------------------------------------------------------------------------- objective (SPEC 1)
flags.DEFINE_float("label_smoothing", 0.0, "T2/T3 coefficient: s (lrm form) or alpha (shafahi form)")
flags.DEFINE_enum("label_smoothing_form", "lrm", ["lrm", "shafahi"],
                  "lrm: 1-s on the true class, s/(C-1) elsewhere; shafahi: y - alpha (y - 1/C)")
flags.DEFINE_float("logit_squeeze", 0.0, "T4/T5 coefficient")
flags.DEFINE_enum("logit_squeeze_form", "batch", ["example", "batch"],
                  "example: mean_i ||z_i|| (ALP); batch: Frobenius norm of the batch logits (Shafahi)")
flags.DEFINE_enum("logit_squeeze_scale", "per_example", ["per_example", "batch"],
                  "batch form: beta/|b| ||Z||_F (poster; matches the published betas with a mean "
                  "cross-entropy) or beta ||Z||_F (Shafahi eq. 5 read literally)")
flags.DEFINE_float("logit_similarity", 0.0, "T6 coefficient beta' of beta'/|b| ||Z - gamma||_F")
flags.DEFINE_float("logit_similarity_gamma", 1.0, "T6 gamma")
flags.DEFINE_float("noise_sigma", 0.0, "T7 Gaussian noise std, in the [0, 1] input scale like --eps")
flags.DEFINE_bool("noise_clip", True, "clip noisy training images to the input range")
flags.DEFINE_float("clean_pairing", 0.0, "T8 clean logit pairing weight lambda")
flags.DEFINE_enum("pairing_distance", "mean_squared", ["mean_squared", "squared_l2", "l2"],
                  "distance in ALP/CLP pairing: mean squared difference (ALP code), squared L2, L2")
flags.DEFINE_string("adv_train", "", "attack used during training, e.g. pgd7_xent (empty: none)")
flags.DEFINE_float("adv_train_eps", None, "eps of the training attack (default: --eps)")
flags.DEFINE_float("adv_train_eps_step", None, "step of the training attack (default: --eps_step)")
flags.DEFINE_float("adv_alpha", 0.5, "T9 weight of the clean cross-entropy (0.5 M-PGD, 0 Madry)")
flags.DEFINE_float("alp_weight", 0.0, "T10 adversarial logit pairing weight lambda")
flags.DEFINE_float("pairing_beta", 0.0, "T11 beta of the logit-norm penalty")
flags.DEFINE_float("pairing_ratio", 0.0, "T11 ratio J_adv : c*h (> 0 turns the decoupled pairing on)")
flags.DEFINE_enum("pairing_h_direction", "clean_to_adv", ["clean_to_adv", "adv_to_clean"],
                  "T11 h: cross-entropy with the clean softmax as target (default) or the reverse")
flags.DEFINE_enum("mixup", "none", ["none", "mixup", "vh_mixup"], "T12/T13 input mixing")
flags.DEFINE_float("mixup_alpha", 1.0, "Beta(alpha, alpha) of the mixing coefficient")
flags.DEFINE_bool("mix_before_attack", True, "mix inputs before generating training attacks "
                  "(else attack clean inputs and mix the adversarial ones)")
flags.DEFINE_bool("separate_bn_batches", False, "clean and adversarial forward passes separately "
                  "(batch-norm statistics per kind) instead of one concatenated pass")
flags.DEFINE_bool("attack_bn_training", False, "batch norm in training mode while generating "
                  "training attacks (default: inference mode)")
# ----------------------------------------------------------------------------- evaluation
flags.DEFINE_list("eval_attacks", ["clean"], "attacks to evaluate, e.g. clean,fgsm_xent,pgd20_xent")
flags.DEFINE_integer("eval_examples", 0, "evaluate on the first N test examples (0: all)")
flags.DEFINE_integer("eval_batch_size", 500, "batch size for evaluation")
flags.DEFINE_float("eps", None, "attack budget in the [0, 1] input scale (default: the dataset's "
                   "threat model: MNIST 0.3, CIFAR 8/255, SVHN 12/255)")
flags.DEFINE_float("eps_step", None, "PGD step (default: MNIST 0.01, CIFAR 2/255, SVHN 3/255)")
flags.DEFINE_integer("restarts", 1, "random restarts of attacks with a random start (worst case kept)")
flags.DEFINE_bool("attack_true_labels", True, "untargeted attacks use true labels (else predictions)")
flags.DEFINE_integer("spsa_samples", 128, "SPSA perturbation samples per iteration")
flags.DEFINE_integer("spsa_examples", 1000, "evaluate SPSA on the first N examples (0: all)")
flags.DEFINE_list("transfer_targets", [], "transfer: models that classify each source's examples "
                  "(default: the sources)")
flags.DEFINE_list("curves", [], "after evaluation: eps,steps,restarts sweeps (Shafahi tables 9-11)")
flags.DEFINE_enum("curve_loss", "xent", ["xent", "cw"], "loss of the --curves PGD attacks")
flags.DEFINE_integer("curve_steps", 100, "PGD steps of the eps and restarts sweeps")
flags.DEFINE_list("analyses", ["logits", "eps_l", "landscape", "activations"],
                  "analyze: which analyses to run")
flags.DEFINE_string("analysis_attack", "pgd10_xent", "adversarial data for the logit and "
                    "activation analyses")
flags.DEFINE_list("audit_steps", ["20", "1000"], "audit: PGD steps of the reference attack and "
                  "of the long attack compared with it")
flags.DEFINE_integer("audit_restarts", 10, "audit: random restarts compared with one start")
flags.DEFINE_integer("audit_spsa_examples", 100, "audit: SPSA on the first N examples (0: skip)")
flags.DEFINE_integer("audit_spsa_iterations", 100, "audit: SPSA iterations")
flags.DEFINE_integer("audit_unbounded_steps", 100, "audit: PGD steps of the unbounded-eps attack")
flags.DEFINE_enum("audit_loss", "xent", ["xent", "cw"], "audit: loss of the PGD/FGSM attacks")
flags.DEFINE_float("audit_tolerance", 0.03, "audit: accuracy drop (absolute) beyond which a "
                   "stronger attack counts as a sign of masking")
# ----------------------------------------------------------------------------- execution
flags.DEFINE_enum("strategy", "default", ["default", "mirrored", "multiworker", "tpu"],
                  "tf.distribute strategy: one device, several local devices, several hosts "
                  "(cluster from TF_CONFIG), or TPU")
flags.DEFINE_integer("num_gpus", 0, "GPUs for --strategy=mirrored (0: all visible devices)")
flags.DEFINE_list("devices", [], "explicit device list for --strategy=mirrored, e.g. /gpu:0,/gpu:1")
flags.DEFINE_integer("cpu_replicas", 0, "split the CPU into N logical devices and mirror over them "
                     "(testing multi-replica code without GPUs)")
flags.DEFINE_string("tpu", "", "TPU name or address for --strategy=tpu")
flags.DEFINE_bool("deterministic", False, "seed everything and turn on TensorFlow op determinism")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the training step (off: on the 2-core CPU "
                  "with oneDNN, XLA was slower; see BUILD_NOTES)")
flags.DEFINE_enum("mixed_precision", "none", ["none", "mixed_float16", "mixed_bfloat16"],
                  "compute in half precision with float32 weights and logits (GPUs with tensor "
                  "cores; float16 adds dynamic loss scaling). Off: slower on CPUs without "
                  "native half-precision arithmetic (BUILD_NOTES)")
flags.DEFINE_bool("attack_xla_step", False, "XLA-compile each PGD step (training and evaluation "
                  "attacks); the step loop stays outside XLA. Off: on the 2-core CPU with oneDNN "
                  "the plain graph was faster (PGD-10 2.54 s vs 3.00 s, batch 128; BUILD_NOTES)")
flags.DEFINE_integer("verbose", -1, "fit verbosity: 0 silent, 1 progress bar, 2 one line per epoch; "
                     "-1 chooses 1 on a terminal and 2 otherwise")


class UsageError(Exception):
    """A bad flag value: reported as one line, exit status 2."""


# Threat models of the papers: (eps, eps_step) in the [0, 1] input scale.
THREAT_DEFAULTS = {"mnist": (0.3, 0.01), "digits": (0.3, 0.01), "cifar10": (8 / 255, 2 / 255),
                   "cifar100": (8 / 255, 2 / 255), "svhn_cropped": (12 / 255, 3 / 255)}


def _eps():
    eps, step = THREAT_DEFAULTS[FLAGS.dataset]
    return (FLAGS.eps if FLAGS.eps is not None else eps,
            FLAGS.eps_step if FLAGS.eps_step is not None else step)


def _floats(name, values):
    try:
        return tuple(float(v) for v in values)
    except ValueError:
        raise UsageError(f"--{name}: expected comma-separated numbers, got {','.join(values)}") from None


def validate():
    """Checks every flag combination; raises UsageError naming the flag and what is allowed."""
    from lrm_tf import data, models
    f = FLAGS
    if f.dataset not in data.DATASETS:
        raise UsageError(f"--dataset={f.dataset}: choose one of {', '.join(data.DATASETS)}")
    if f.model not in models.MODELS:
        raise UsageError(f"--model={f.model}: choose one of {', '.join(models.MODELS)}")
    for name in ("train_epochs", "batch_size", "eval_batch_size"):
        if getattr(f, name) < 1:
            raise UsageError(f"--{name}={getattr(f, name)}: must be at least 1")
    for name in ("train_steps", "eval_examples", "synthetic_data", "train_limit",
                 "checkpoint_every_steps"):
        if getattr(f, name) < 0:
            raise UsageError(f"--{name}={getattr(f, name)}: must be 0 or more")
    if f.weight_decay < 0 or f.momentum < 0 or f.lr_warmup < 0:
        raise UsageError("--weight_decay, --momentum and --lr_warmup must be 0 or more")
    values, bounds = _floats("lr_values", f.lr_values), _floats("lr_boundaries", f.lr_boundaries)
    if len(values) != len(bounds) + 1:
        raise UsageError(f"--lr_values needs one more entry than --lr_boundaries "
                         f"(got {len(values)} and {len(bounds)})")
    if any(v < 0 for v in values) or list(bounds) != sorted(bounds):
        raise UsageError("--lr_values must be >= 0 and --lr_boundaries increasing")
    if f.model == "wide_resnet" and f.depth < 8:
        raise UsageError(f"--depth={f.depth}: wide_resnet needs depth >= 8")
    if f.width < 1:
        raise UsageError(f"--width={f.width}: must be at least 1")
    eps, eps_step = _eps()
    if eps <= 0:
        raise UsageError(f"--eps={eps}: must be > 0")
    if eps_step <= 0:
        raise UsageError(f"--eps_step={eps_step}: must be > 0")
    from lrm_tf import attacks
    for name in [*f.eval_attacks, *([f.adv_train] if f.adv_train else [])]:
        flag = "adv_train" if name == f.adv_train else "eval_attacks"
        try:
            spec = attacks.parse_attack(name)
        except ValueError as e:
            raise UsageError(f"--{flag}: {e}") from None
        if spec.family == "pgd" and spec.norm == "linf" and eps_step > eps:
            raise UsageError(f"--eps_step={eps_step:g} > --eps={eps:g}: PGD's step must not exceed eps")
    for name in ("adv_train_eps", "adv_train_eps_step"):
        if getattr(f, name) is not None and getattr(f, name) <= 0:
            raise UsageError(f"--{name}={getattr(f, name)}: must be > 0")
    if not f.eval_attacks:
        raise UsageError("--eval_attacks: name at least one attack (e.g. clean)")
    if f.restarts < 1:
        raise UsageError(f"--restarts={f.restarts}: must be at least 1")
    if f.spsa_samples < 1 or f.spsa_examples < 0:
        raise UsageError("--spsa_samples must be >= 1 and --spsa_examples >= 0")
    classes = data.DATASETS[f.dataset].num_classes
    if f.label_smoothing_form == "lrm" and not 0 <= f.label_smoothing <= 1 - 1 / classes:
        raise UsageError(f"--label_smoothing={f.label_smoothing}: the lrm form needs s in "
                         f"[0, 1 - 1/C] = [0, {1 - 1 / classes:.4g}] for {f.dataset}")
    if f.label_smoothing_form == "shafahi" and not 0 <= f.label_smoothing <= 1:
        raise UsageError(f"--label_smoothing={f.label_smoothing}: the shafahi form needs alpha in [0, 1]")
    for name in ("logit_squeeze", "logit_similarity", "noise_sigma", "clean_pairing", "alp_weight",
                 "pairing_beta", "pairing_ratio", "mixup_alpha"):
        if getattr(f, name) < 0:
            raise UsageError(f"--{name}={getattr(f, name)}: must be >= 0")
    if f.mixup != "none" and f.mixup_alpha <= 0:
        raise UsageError(f"--mixup_alpha={f.mixup_alpha}: must be > 0 with --mixup={f.mixup}")
    if not 0 <= f.adv_alpha <= 1:
        raise UsageError(f"--adv_alpha={f.adv_alpha}: must be in [0, 1]")
    if (f.alp_weight or f.pairing_ratio) and not f.adv_train:
        raise UsageError("--alp_weight and --pairing_ratio pair clean and adversarial logits: "
                         "set --adv_train (e.g. --adv_train=pgd7_xent)")
    if f.pairing_beta and not f.pairing_ratio:
        raise UsageError("--pairing_beta is part of the decoupled pairing: set --pairing_ratio > 0")
    if f.cpu_replicas < 0 or f.num_gpus < 0:
        raise UsageError("--cpu_replicas and --num_gpus must be >= 0")
    if f.cpu_replicas > 1 and f.strategy != "mirrored":
        raise UsageError(f"--cpu_replicas={f.cpu_replicas} needs --strategy=mirrored")
    replicas = f.cpu_replicas or len(f.devices) or f.num_gpus or 1
    if f.batch_size % replicas:
        raise UsageError(f"--batch_size={f.batch_size} must be divisible by the {replicas} replicas")
    if f.svhn_extra and f.dataset != "svhn_cropped":
        raise UsageError(f"--svhn_extra applies to --dataset=svhn_cropped, not {f.dataset}")
    if f.data_dir and f.local_data:
        raise UsageError("--data_dir and --local_data conflict: set one")
    if f.local_data and not os.path.isdir(f.local_data):
        raise UsageError(f"--local_data={f.local_data}: no such folder")
    from lrm_tf.report.rundir import is_run_dir, is_saved_model
    if f.mode == "transfer" and not f.load_from:
        raise UsageError("--mode=transfer needs --load_from=<source>[,<source>...]")
    paths = [p for p in f.load_from.split(",") if p] if f.mode == "transfer" else \
        ([f.load_from] if f.load_from else [])
    for flag, group in (("load_from", paths), ("transfer_targets", f.transfer_targets)):
        for path in group:
            if not (is_run_dir(path) or is_saved_model(path)):
                raise UsageError(f"--{flag}={path}: not a run directory (flags.json) or a SavedModel")
    if f.mode == "compare":
        if not f.compare_runs:
            raise UsageError("--mode=compare needs --compare_runs=<run dir>[,<run dir>...]")
        for path in f.compare_runs:
            if not os.path.isdir(path):
                raise UsageError(f"--compare_runs={path}: no such run directory")
    from lrm_tf.eval import analysis
    from lrm_tf.eval import curves
    if not set(f.curves) <= set(curves.CURVES):
        raise UsageError(f"--curves={','.join(f.curves)}: choose from {','.join(curves.CURVES)}")
    if not set(f.analyses) <= set(analysis.ANALYSES):
        raise UsageError(f"--analyses={','.join(f.analyses)}: choose from {','.join(analysis.ANALYSES)}")
    try:
        attacks.parse_attack(f.analysis_attack)
    except ValueError as e:
        raise UsageError(f"--analysis_attack: {e}") from None
    if f.curve_steps < 1:
        raise UsageError(f"--curve_steps={f.curve_steps}: must be at least 1")
    if f.mode == "audit":
        _audit_config()


def _audit_config():
    from lrm_tf.eval.audit import AuditConfig
    steps = _floats("audit_steps", FLAGS.audit_steps)
    if len(steps) != 2 or any(int(k) != k for k in steps):
        raise UsageError(f"--audit_steps={','.join(FLAGS.audit_steps)}: give two whole numbers, "
                         "e.g. 20,1000")
    try:
        return AuditConfig(steps_low=int(steps[0]), steps_high=int(steps[1]),
                           restarts=FLAGS.audit_restarts, spsa_examples=FLAGS.audit_spsa_examples,
                           spsa_iterations=FLAGS.audit_spsa_iterations,
                           unbounded_steps=FLAGS.audit_unbounded_steps,
                           attack_loss=FLAGS.audit_loss, tolerance=FLAGS.audit_tolerance)
    except ValueError as e:
        raise UsageError(f"--{str(e).replace('audit ', 'audit_', 1)}") from None


@contextlib.contextmanager
def _quiet_native_stderr():
    """Silences TensorFlow's native start-up logs (written to fd 2 before its log level applies)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


def _setup_tf():
    with _quiet_native_stderr():
        import keras
        import tensorflow as tf
        if FLAGS.strategy == "multiworker":
            _strategy()  # collective ops must be configured before TensorFlow starts its devices
        if FLAGS.cpu_replicas > 1 and FLAGS.strategy == "mirrored":
            from lrm_tf.training.distribute import split_logical_cpus
            split_logical_cpus(FLAGS.cpu_replicas)
        tf.config.list_logical_devices()  # device initialisation logs (e.g. no CUDA driver)
    from absl import logging
    logging.set_verbosity(logging.ERROR)
    tf.get_logger().setLevel("ERROR")
    if FLAGS.deterministic:
        tf.config.experimental.enable_op_determinism()
    keras.utils.set_random_seed(FLAGS.seed)


def _load_data():
    from lrm_tf import data
    if FLAGS.synthetic_data:
        n = FLAGS.synthetic_data
        return data.synthetic_arrays(FLAGS.dataset, n, max(n // 2, 1), FLAGS.seed)
    return data.load_arrays(FLAGS.dataset, FLAGS.data_dir or None, FLAGS.local_data or None,
                            svhn_extra=FLAGS.svhn_extra)


def _train_config():
    from lrm_tf.training import TrainConfig
    return TrainConfig(
        batch_size=FLAGS.batch_size, train_epochs=FLAGS.train_epochs, train_steps=FLAGS.train_steps,
        lr_values=_floats("lr_values", FLAGS.lr_values),
        lr_boundaries=_floats("lr_boundaries", FLAGS.lr_boundaries), lr_warmup=FLAGS.lr_warmup,
        schedule_unit=FLAGS.schedule_unit, optimizer=FLAGS.optimizer, momentum=FLAGS.momentum,
        weight_decay=FLAGS.weight_decay, seed=FLAGS.seed,
        checkpoint_every_steps=FLAGS.checkpoint_every_steps, train_limit=FLAGS.train_limit,
        verbose=FLAGS.verbose, jit_compile=FLAGS.jit_compile, mixed_precision=_mixed_precision())


def _mixed_precision():
    return "" if FLAGS.mixed_precision == "none" else FLAGS.mixed_precision


def _objective():
    from lrm_tf.objectives.compose import Objective
    eps, eps_step = _eps()
    squared, mean_over_classes = {"mean_squared": (True, True), "squared_l2": (True, False),
                                  "l2": (False, False)}[FLAGS.pairing_distance]
    return Objective(
        label_smoothing=FLAGS.label_smoothing, label_smoothing_form=FLAGS.label_smoothing_form,
        logit_squeeze=FLAGS.logit_squeeze, logit_squeeze_form=FLAGS.logit_squeeze_form,
        logit_squeeze_per_example_scale=FLAGS.logit_squeeze_scale == "per_example",
        logit_similarity=FLAGS.logit_similarity,
        logit_similarity_gamma=FLAGS.logit_similarity_gamma,
        noise_sigma=FLAGS.noise_sigma, noise_clip=FLAGS.noise_clip,
        clean_pairing=FLAGS.clean_pairing, pairing_squared=squared,
        pairing_mean_over_classes=mean_over_classes, adv_train=FLAGS.adv_train,
        adv_alpha=FLAGS.adv_alpha, alp_weight=FLAGS.alp_weight, pairing_beta=FLAGS.pairing_beta,
        pairing_ratio=FLAGS.pairing_ratio, pairing_h_direction=FLAGS.pairing_h_direction,
        mixup=FLAGS.mixup, mixup_alpha=FLAGS.mixup_alpha,
        mix_before_attack=FLAGS.mix_before_attack, separate_bn_batches=FLAGS.separate_bn_batches,
        attack_bn_training=FLAGS.attack_bn_training, attack_xla_step=FLAGS.attack_xla_step,
        eps=FLAGS.adv_train_eps if FLAGS.adv_train_eps is not None else eps,
        eps_step=FLAGS.adv_train_eps_step if FLAGS.adv_train_eps_step is not None else eps_step)


@functools.lru_cache(maxsize=1)
def _strategy():
    from lrm_tf.training.distribute import make_strategy
    devices = FLAGS.devices or ([f"/cpu:{i}" for i in range(FLAGS.cpu_replicas)]
                                if FLAGS.cpu_replicas > 1 else [])
    return make_strategy(FLAGS.strategy, devices, FLAGS.num_gpus, FLAGS.tpu)


def _threat():
    from lrm_tf.eval.evaluation import ThreatModel
    eps, eps_step = _eps()
    return ThreatModel(eps=eps, eps_step=eps_step, restarts=FLAGS.restarts,
                       use_true_labels=FLAGS.attack_true_labels, spsa_samples=FLAGS.spsa_samples,
                       spsa_examples=FLAGS.spsa_examples, xla_step=FLAGS.attack_xla_step)


def _test_images(arrays):
    from lrm_tf import data
    n = FLAGS.eval_examples or len(arrays.y_test)
    return data.to_float(arrays.x_test[:n]).numpy(), arrays.y_test[:n]


def _output_dir(run):
    """Where eval/analyze write: --model_dir when given with --load_from, else the loaded run."""
    from lrm_tf.report.rundir import RunDir, is_run_dir
    source = FLAGS.load_from or run.path
    if (FLAGS.load_from and FLAGS["model_dir"].present) or not is_run_dir(source):
        return source, run
    return source, RunDir(source)


def _evaluate(model, arrays, run, title):
    from lrm_tf.eval import evaluation
    images, labels = _test_images(arrays)
    results = evaluation.evaluate_attacks(model, images, labels, FLAGS.eval_attacks, _threat(),
                                          FLAGS.eval_batch_size, FLAGS.seed, strategy=_strategy())
    evaluation.write_results(run, results, title)
    print()
    evaluation.print_table(results)
    print(f"\nresults: {run.results_md}")
    if FLAGS.curves:
        from lrm_tf.eval import curves
        curves.run_curves(model, images, labels, run.path, FLAGS.curves, _threat(),
                          steps=FLAGS.curve_steps, attack_loss=FLAGS.curve_loss,
                          batch_size=FLAGS.eval_batch_size, seed=FLAGS.seed, strategy=_strategy())
        print(f"curves: {', '.join(f'curve_{c}.png' for c in FLAGS.curves)} in {run.path}")
    return results


def _run_train(run):
    from lrm_tf import export, models, training
    from lrm_tf.report.rundir import RunDir, write_json_atomic
    if run.is_finished():
        if not FLAGS.overwrite:
            raise UsageError(f"--model_dir={run.path} holds a finished run: pass --overwrite to "
                             "replace it or choose another --model_dir")
        shutil.rmtree(run.path)
    arrays = _load_data()  # before the run directory exists: a missing data set leaves nothing behind
    try:
        run.check_writable()
    except OSError as e:
        raise UsageError(f"--model_dir={run.path}: cannot write there ({e.strerror})") from None
    write_json_atomic(run.flags_json, _resolved_flags())
    run.set_state("training")
    info = arrays.info
    strategy = _strategy()
    replicas = strategy.num_replicas_in_sync
    if FLAGS.batch_size % replicas:
        raise UsageError(f"--batch_size={FLAGS.batch_size} must be divisible by the {replicas} replicas")
    t0 = time.time()
    net = training.train(
        lambda: models.build_model(FLAGS.model, info.image_shape, info.num_classes,
                                   FLAGS.depth, FLAGS.width, seed=FLAGS.seed,
                                   synchronized_bn=replicas > 1,
                                   mixed_precision=_mixed_precision()),
        # train() itself keeps the chief's checkpoints in --model_dir and a worker's elsewhere.
        _objective(), arrays, RunDir(FLAGS.model_dir), _train_config(), strategy=strategy)
    train_seconds = time.time() - t0
    if FLAGS.export:
        export.export_saved_model(net, run.saved_model)
        export.save_keras(net, run.keras_file)
    results = _evaluate(net, arrays, run, f"{FLAGS.model} on {FLAGS.dataset} ({run.path})")
    run.set_state("finished", train_seconds=round(train_seconds, 1))
    return results


def _run_eval(run):
    from lrm_tf import export
    source, out = _output_dir(run)
    model = export.load_classifier(source)
    arrays = _load_data()
    out.create()
    return _evaluate(model, arrays, out, f"evaluation of {source}")


def _run_transfer(run):
    from lrm_tf import export
    from lrm_tf.eval import transfer
    loaded = {}  # one object per path, so source == target is recognised as white-box

    def models(paths):
        names = [os.path.basename(os.path.normpath(p)) for p in paths]
        names = names if len(set(names)) == len(names) else paths
        for p in paths:
            if p not in loaded:
                loaded[p] = export.load_classifier(p)
        return {name: loaded[p] for name, p in zip(names, paths)}

    sources = [p for p in FLAGS.load_from.split(",") if p]
    images, labels = _test_images(_load_data())
    attack_names = [a for a in FLAGS.eval_attacks if a != "clean"]
    if not attack_names:
        raise UsageError("--mode=transfer needs an attack in --eval_attacks (e.g. pgd7_xent)")
    run.create()
    for attack in attack_names:
        matrix = transfer.transfer_matrix(models(sources), models(FLAGS.transfer_targets or sources),
                                          images, labels, attack, _threat(), FLAGS.eval_batch_size,
                                          FLAGS.seed, _strategy())
        transfer.write_transfer(run.path, matrix,
                                "transfer" if len(attack_names) == 1 else f"transfer_{attack}")
        print(transfer.transfer_markdown(matrix))


def _run_analyze(run):
    from lrm_tf import export
    from lrm_tf.eval import analysis
    source, out = _output_dir(run)
    images, labels = _test_images(_load_data())
    eps, eps_step = _eps()
    out.create()
    analysis.run_analyses(export.load_classifier(source), images, labels, out.path, eps, eps_step,
                          FLAGS.seed, which=FLAGS.analyses, attack_name=FLAGS.analysis_attack,
                          batch_size=FLAGS.eval_batch_size, threat=_threat(), strategy=_strategy())
    print(f"analyses written to {out.path}: " + ", ".join(f"analysis_{a}.png" for a in FLAGS.analyses))


def _run_audit(run):
    from lrm_tf import export
    from lrm_tf.eval import audit
    source, out = _output_dir(run)
    model = export.load_classifier(source)
    images, labels = _test_images(_load_data())
    out.create()
    result = audit.masking_audit(model, images, labels, _threat(), _audit_config(),
                                 FLAGS.eval_batch_size, FLAGS.seed, _strategy())
    _, md = audit.write_audit(out.path, result, f"Gradient-masking audit of {source}")
    print(f"audit written to {md}")


def _run_compare(run):
    from lrm_tf.report import compare
    try:
        rows = compare.compare_runs(FLAGS.compare_runs)
    except compare.CompareError as e:
        raise UsageError(f"--compare_runs: {e}") from None
    run.create()
    compare.write_comparison(run.path, rows)
    print(compare.compare_markdown(rows))
    print(f"comparison written to {run.path}")


def _run_export(run):
    from lrm_tf import data, export, models
    import tensorflow as tf
    if not run.has_checkpoint():
        raise UsageError(f"--model_dir={run.path}: no checkpoint to export")
    info = data.dataset_info(FLAGS.dataset)
    net = models.build_model(FLAGS.model, info.image_shape, info.num_classes, FLAGS.depth,
                             FLAGS.width, mixed_precision=_mixed_precision())
    ckpt = tf.train.Checkpoint(net=net)
    ckpt.restore(tf.train.latest_checkpoint(run.checkpoints)).expect_partial()
    export.export_saved_model(net, run.saved_model)
    export.save_keras(net, run.keras_file)
    print(f"exported {run.saved_model} and {run.keras_file}")


def _resolved_flags():
    own = {f.name for f in FLAGS.get_key_flags_for_module(sys.argv[0])} | {
        f.name for f in FLAGS.get_flags_for_module(__name__)}
    return {name: FLAGS[name].value for name in sorted(own)}


def main(argv):
    if len(argv) > 1:
        raise UsageError(f"unexpected arguments: {' '.join(argv[1:])} (flags look like --name=value)")
    validate()
    from lrm_tf.report.rundir import RunDir
    run = RunDir(FLAGS.model_dir)
    if FLAGS.strategy == "multiworker":
        from lrm_tf.training import distribute
        if not distribute.is_chief(_strategy()):
            # Every worker runs the whole program (collectives need all of them); only the
            # chief's files are kept, the others write to a scratch folder.
            import tempfile
            task_type, task_id = distribute.task(_strategy())
            run = RunDir(tempfile.mkdtemp(prefix=f"lrm_tf_{task_type}{task_id}_"))
    modes = {"train": _run_train, "eval": _run_eval, "transfer": _run_transfer,
             "analyze": _run_analyze, "audit": _run_audit, "compare": _run_compare,
             "export": _run_export}
    modes[FLAGS.mode](run)


def _parse_flags(argv):
    try:
        return FLAGS(argv)
    except flags.Error as e:
        message = str(e).replace("ERROR:: Unable to open flagfile", "--flagfile: cannot open the file")
        print(f"error: {message}", file=sys.stderr)
        sys.exit(2)


def _guarded(argv):
    """main() with the expected failures turned into one line on stderr and an exit status."""
    _setup_tf()
    from lrm_tf.data import DataError
    from lrm_tf.report.rundir import RunDir
    from lrm_tf.training import DivergenceError
    try:
        main(argv)
    except UsageError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except DataError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(3)
    except DivergenceError as e:
        RunDir(FLAGS.model_dir).set_state("diverged", message=str(e))
        print(f"error: {e}", file=sys.stderr)
        sys.exit(4)


def run_main():
    app.run(_guarded, flags_parser=_parse_flags)


def run_argv(argv) -> int:
    """Runs the program in this process with `argv` (argv[0] is the program name); returns the
    exit status. Flags are reset first, so it can be called repeatedly (tests, notebooks)."""
    FLAGS.unparse_flags()
    _strategy.cache_clear()
    try:
        _guarded(_parse_flags(list(argv)))
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 1
    return 0


if __name__ == "__main__":
    run_main()
