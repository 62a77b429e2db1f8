"""The one entry point: `python -m lrm_tf.main --flagfile=flags/<experiment>.cfg [--flag=value ...]`.

Flags are defined and validated here only; everything below takes plain Python arguments.
A bad flag exits with status 2 and one line naming the flag and what is allowed.
"""

from __future__ import annotations

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # keep TensorFlow's C++ start-up chatter out of results

import contextlib
import json
import shutil
import sys
import time

from absl import app, flags

FLAGS = flags.FLAGS

# ----------------------------------------------------------------------------- what and where
flags.DEFINE_enum("mode", "train", ["train", "eval", "export"],
                  "train (then evaluate and export), eval, or export")
flags.DEFINE_string("model_dir", "runs/default", "the run directory")
flags.DEFINE_bool("overwrite", False, "replace a finished run in --model_dir instead of refusing")
flags.DEFINE_string("load_from", "", "run directory or SavedModel to evaluate (default: --model_dir)")
# ----------------------------------------------------------------------------- data
flags.DEFINE_string("dataset", "digits",
                    "mnist, cifar10, cifar100, svhn_cropped, or digits (embedded 8x8, offline)")
flags.DEFINE_string("data_dir", "", "a TFDS data directory")
flags.DEFINE_string("local_data", "", "a folder with the upstream files (MNIST idx .gz, "
                    "cifar-10-batches-py/, cifar-100-python/, SVHN *_32x32.mat)")
flags.DEFINE_integer("synthetic_data", 0, "use N random training images of the dataset's shape "
                     "(and N/2 test images) instead of real data: dry runs and tests")
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
# ----------------------------------------------------------------------------- evaluation
flags.DEFINE_list("eval_attacks", ["clean"], "attacks to evaluate, e.g. clean,fgsm_xent,pgd20_xent")
flags.DEFINE_integer("eval_examples", 0, "evaluate on the first N test examples (0: all)")
flags.DEFINE_integer("eval_batch_size", 500, "batch size for evaluation")
# ----------------------------------------------------------------------------- execution
flags.DEFINE_bool("deterministic", False, "seed everything and turn on TensorFlow op determinism")
flags.DEFINE_bool("jit_compile", False, "XLA-compile the training step")
flags.DEFINE_integer("verbose", -1, "fit verbosity: 0 silent, 1 progress bar, 2 one line per epoch; "
                     "-1 chooses 1 on a terminal and 2 otherwise")


class UsageError(Exception):
    """A bad flag value: reported as one line, exit status 2."""


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
    if f.data_dir and f.local_data:
        raise UsageError("--data_dir and --local_data conflict: set one")
    if f.local_data and not os.path.isdir(f.local_data):
        raise UsageError(f"--local_data={f.local_data}: no such folder")
    if f.mode == "eval" and f.load_from:
        from lrm_tf.rundir import is_run_dir, is_saved_model
        if not (is_run_dir(f.load_from) or is_saved_model(f.load_from)):
            raise UsageError(f"--load_from={f.load_from}: not a run directory (flags.json) or a SavedModel")


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
    return data.load_arrays(FLAGS.dataset, FLAGS.data_dir or None, FLAGS.local_data or None)


def _train_config():
    from lrm_tf.training import TrainConfig
    return TrainConfig(
        batch_size=FLAGS.batch_size, train_epochs=FLAGS.train_epochs, train_steps=FLAGS.train_steps,
        lr_values=_floats("lr_values", FLAGS.lr_values),
        lr_boundaries=_floats("lr_boundaries", FLAGS.lr_boundaries), lr_warmup=FLAGS.lr_warmup,
        schedule_unit=FLAGS.schedule_unit, optimizer=FLAGS.optimizer, momentum=FLAGS.momentum,
        weight_decay=FLAGS.weight_decay, seed=FLAGS.seed,
        checkpoint_every_steps=FLAGS.checkpoint_every_steps, train_limit=FLAGS.train_limit,
        verbose=FLAGS.verbose, jit_compile=FLAGS.jit_compile)


def _objective():
    from lrm_tf.objectives.compose import Objective
    return Objective()


def _evaluate(net, arrays, run, title):
    from lrm_tf import evaluation, training
    results = {}
    for name in FLAGS.eval_attacks:
        t0 = time.time()
        acc, n = training.evaluate_clean(net, arrays, FLAGS.eval_batch_size,
                                         FLAGS.eval_examples or None)
        results[name] = {"accuracy": acc, "examples": n, "params": {},
                         "seconds": round(time.time() - t0, 2)}
    evaluation.write_results(run, results, title)
    print()
    evaluation.print_table(results)
    print(f"\nresults: {run.results_md}")
    return results


def _run_train(run):
    from lrm_tf import export, models, training
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
    from lrm_tf.rundir import write_json_atomic
    write_json_atomic(run.flags_json, _resolved_flags())
    run.set_state("training")
    info = arrays.info
    t0 = time.time()
    net = training.train(
        lambda: models.build_model(FLAGS.model, info.image_shape, info.num_classes,
                                   FLAGS.depth, FLAGS.width, seed=FLAGS.seed),
        _objective(), arrays, run, _train_config())
    train_seconds = time.time() - t0
    export.export_saved_model(net, run.saved_model)
    export.save_keras(net, run.keras_file)
    results = _evaluate(net, arrays, run, f"{FLAGS.model} on {FLAGS.dataset} ({run.path})")
    run.set_state("finished", train_seconds=round(train_seconds, 1))
    return results


def _run_eval(run):
    from lrm_tf import export
    source = FLAGS.load_from or run.path
    net = export.load_classifier(source)
    arrays = _load_data()
    out = run if (FLAGS.load_from and FLAGS.model_dir != flags.FLAGS["model_dir"].default) else \
        __import__("lrm_tf.rundir", fromlist=["RunDir"]).RunDir(source)
    return _evaluate(net, arrays, out, f"evaluation of {source}")


def _run_export(run):
    from lrm_tf import data, export, models, training
    import tensorflow as tf
    if not run.has_checkpoint():
        raise UsageError(f"--model_dir={run.path}: no checkpoint to export")
    info = data.dataset_info(FLAGS.dataset)
    net = models.build_model(FLAGS.model, info.image_shape, info.num_classes, FLAGS.depth, FLAGS.width)
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
    from lrm_tf.rundir import RunDir
    run = RunDir(FLAGS.model_dir)
    {"train": _run_train, "eval": _run_eval, "export": _run_export}[FLAGS.mode](run)


def _parse_flags(argv):
    try:
        return FLAGS(argv)
    except flags.Error as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)


def run_main():
    def guarded(argv):
        _setup_tf()
        from lrm_tf.data import DataError
        try:
            main(argv)
        except UsageError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(3)
    app.run(guarded, flags_parser=_parse_flags)


if __name__ == "__main__":
    run_main()
