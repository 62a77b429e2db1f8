"""What each `--mode` does, given the settings built from the flags (`Settings`) and the run
directory. `MODES` is the table the entry point dispatches on and `--mode` is made from: a new
mode is one function here (its docstring's first line is its `--help` text) and one entry."""

from __future__ import annotations

import dataclasses
import os
import time

from absl import flags

from lrm_tf.cli.checks import load_paths
from lrm_tf.cli.flags import FLAGS, UsageError
from lrm_tf.cli.settings import Settings


def _test_images(s: Settings, arrays):
    from lrm_tf import data

    n = s.eval.eval_examples or len(arrays.y_test)
    return data.to_float(arrays.x_test[:n]).numpy(), arrays.y_test[:n]


def _loaded(source: str, s: Settings):
    """The classifier in `source`, computing in --mixed_precision if given (else as saved); one
    line (exit 2) when it does not take the dataset's images or predicts another number of classes."""
    from lrm_tf import export
    from lrm_tf.data import dataset_info

    model, info = export.load_classifier(source, s.load_precision), dataset_info(s.data.dataset)
    shape, classes = _model_io(model, info.image_shape)
    flag = f"--dataset={info.name}: the model in {source}"
    if classes == -1:
        raise UsageError(f"{flag} does not take {info.name}'s {_dims(info.image_shape)} images")
    if (shape is not None and shape != tuple(info.image_shape)) or classes not in (None, info.num_classes):
        raise UsageError(
            f"{flag} takes {_dims(shape)} images and predicts {classes} classes; "
            f"{info.name} has {_dims(info.image_shape)} images and {info.num_classes} classes"
        )
    return model


def _dims(shape) -> str:
    return "x".join(map(str, shape))


def _model_io(model, image_shape) -> tuple:
    """(input shape without the batch, classes) of a Keras model; for another model (a loaded
    SavedModel) the classes it predicts for one blank image of `image_shape`, and shape None
    if it refuses that image (None, None when it refuses in another way)."""
    import tensorflow as tf

    from lrm_tf.attacks import as_logits_fn

    if hasattr(model, "output_shape") and hasattr(model, "input_shape"):
        return tuple(model.input_shape[1:]), model.output_shape[-1]
    try:
        logits = as_logits_fn(model)(tf.zeros([1, *image_shape], tf.float32))
    except (tf.errors.InvalidArgumentError, ValueError, TypeError):
        return None, -1  # refuses the dataset's shape: reported as a mismatch
    return (tuple(image_shape), int(logits.shape[-1])) if logits.shape.rank == 2 else (None, None)


def _record(s: Settings, out_path: str, mode: str, **extra) -> None:
    """provenance.json beside the mode's results: resolved flags, seed, versions, date."""
    from lrm_tf.cli import flags as cli_flags
    from lrm_tf.cli import sources
    from lrm_tf.report import writer

    record = writer.provenance(
        cli_flags.resolved(),
        s.train.seed,
        mode=mode,
        threat=dataclasses.asdict(s.threat),
        flag_sources=sources.sources(),
        **extra,
    )
    writer.write_provenance(out_path, mode, record)


def _output_dir(run):
    """Where eval/analyze/audit write: --model_dir when given with --load_from, else the loaded run."""
    from lrm_tf.report.rundir import RunDir, is_run_dir

    source = FLAGS.load_from or run.path
    if (FLAGS.load_from and FLAGS["model_dir"].present) or not is_run_dir(source):
        return source, run
    return source, RunDir(source)


def _label(s: Settings, out_path: str, source: str, model):
    """What the figures name: the evaluated run (or model) with its model and dataset."""
    from lrm_tf.report.plotting import run_label

    return run_label(out_path, source=source, model=model, dataset=s.data.dataset)


def _evaluate(s: Settings, model, arrays, run, title, source=None):
    from lrm_tf import killpoints
    from lrm_tf.eval import evaluation

    images, labels = _test_images(s, arrays)
    results = evaluation.evaluate_attacks(
        model,
        images,
        labels,
        s.eval.eval_attacks,
        s.threat,
        s.eval.eval_batch_size,
        s.train.seed,
        strategy=s.strategy(),
        spsa=s.spsa,
        save_adversarial=run.path if s.eval.save_adversarial else None,
    )
    killpoints.hit("evaluation")
    evaluation.write_results(run, results, title)
    print()
    evaluation.print_table(results)
    print(f"\nresults: {run.results_md}")
    if s.curves.curves:
        from lrm_tf.eval import curves

        curves.run_curves(
            model,
            images,
            labels,
            run.path,
            s.curves,
            s.threat,
            batch_size=s.eval.eval_batch_size,
            seed=s.train.seed,
            strategy=s.strategy(),
            label=_label(s, run.path, source or run.path, model),
        )
        print(f"curves: {', '.join(f'curve_{c}.png' for c in s.curves.curves)} in {run.path}")
    return results


def _build_net(s: Settings, info, *, seed=None, synchronized_bn=False):
    from lrm_tf import models
    from lrm_tf.cli.checks import model_args

    return models.build_model(
        s.model.model,
        info.image_shape,
        info.num_classes,
        seed=seed,
        synchronized_bn=synchronized_bn,
        mixed_precision=s.train.mixed_precision,
        **model_args(),
    )


def run_train(s: Settings, run):
    """train, then evaluate and export"""
    from lrm_tf import export, killpoints, training
    from lrm_tf.cli import flags as cli_flags
    from lrm_tf.cli import sources
    from lrm_tf.cli.checks import check_replicas
    from lrm_tf.report.rundir import RunDir, write_json_atomic

    status = run.read_json(run.state_json, {}).get("status")
    if status in ("finished", "not_learning"):  # resuming a run that did not learn would report it
        if not FLAGS.overwrite:
            what = "a finished run" if status == "finished" else "a run that did not learn"
            raise UsageError(
                f"--model_dir={run.path} holds {what}: pass --overwrite to "
                "replace it or choose another --model_dir"
            )
        run.remove()
    arrays = s.load_data()  # before the run directory exists: a missing data set leaves nothing behind
    try:
        run.check_writable()
    except OSError as e:
        raise UsageError(f"--model_dir={run.path}: cannot write there ({e.strerror})") from None
    write_json_atomic(run.flags_json, {**cli_flags.resolved(), "_sources": sources.sources()})
    run.set_state("training")
    killpoints.hit("started")
    info = arrays.info
    strategy = s.strategy()
    replicas = strategy.num_replicas_in_sync
    check_replicas(s.train.batch_size, replicas)
    t0 = time.time()
    net = training.train(
        lambda: _build_net(s, info, seed=s.train.seed, synchronized_bn=replicas > 1),
        # train() itself keeps the chief's checkpoints in --model_dir and a worker's elsewhere.
        s.objective,
        arrays,
        RunDir(FLAGS.model_dir),
        s.train,
        s.train_threat,
        strategy=strategy,
    )
    train_seconds = time.time() - t0
    if FLAGS.export:
        export.export_saved_model(net, run.saved_model)
        export.save_keras(net, run.keras_file)
    results = _evaluate(s, net, arrays, run, f"{s.model.model} on {s.data.dataset} ({run.path})")
    _record(s, run.path, "train")
    killpoints.hit("finishing")
    run.set_state("finished", train_seconds=round(train_seconds, 1))
    return results


def run_eval(s: Settings, run):
    """evaluate --load_from (or --model_dir) under --eval_attacks"""
    source, out = _output_dir(run)
    model = _loaded(source, s)
    arrays = s.load_data()
    out.create()
    results = _evaluate(s, model, arrays, out, f"evaluation of {source}", source)
    _record(s, out.path, "eval", evaluated=source)
    return results


def run_transfer(s: Settings, run):
    """black-box transfer matrix: sources --load_from, targets --transfer_targets"""
    from lrm_tf.eval import transfer

    loaded = {}  # one object per path, so source == target is recognised as white-box

    def models(paths):
        names = [os.path.basename(os.path.normpath(p)) for p in paths]
        names = names if len(set(names)) == len(names) else paths
        for p in paths:
            if p not in loaded:
                loaded[p] = _loaded(p, s)
        return {name: loaded[p] for name, p in zip(names, paths)}

    sources = load_paths()
    images, labels = _test_images(s, s.load_data())
    attack_names = [a for a in s.eval.eval_attacks if a != "clean"]
    if not attack_names:
        raise UsageError("--mode=transfer needs an attack in --eval_attacks (e.g. pgd7_xent)")
    run.create()
    for attack in attack_names:
        matrix = transfer.transfer_matrix(
            models(sources),
            models(FLAGS.transfer_targets or sources),
            images,
            labels,
            attack,
            s.threat,
            s.eval.eval_batch_size,
            s.train.seed,
            s.strategy(),
            spsa=s.spsa,
        )
        transfer.write_transfer(
            run.path, matrix, "transfer" if len(attack_names) == 1 else f"transfer_{attack}"
        )
        print(transfer.transfer_markdown(matrix))
    _record(s, run.path, "transfer", sources=sources, targets=list(FLAGS.transfer_targets or sources))


def run_analyze(s: Settings, run):
    """the papers' analyses (logit distributions, eps_L, loss landscape, activations)"""
    from lrm_tf.eval import analysis

    source, out = _output_dir(run)
    model = _loaded(source, s)
    images, labels = _test_images(s, s.load_data())
    out.create()
    analysis.run_analyses(
        model,
        images,
        labels,
        out.path,
        s.threat,
        s.train.seed,
        s.analysis,
        batch_size=s.eval.eval_batch_size,
        strategy=s.strategy(),
        spsa=s.spsa,
        label=_label(s, out.path, source, model),
    )
    _record(s, out.path, "analyze", evaluated=source)
    print(f"analyses written to {out.path}: " + ", ".join(f"analysis_{a}.png" for a in s.analysis.analyses))


def run_audit(s: Settings, run):
    """gradient-masking checks"""
    from lrm_tf.eval import audit

    source, out = _output_dir(run)
    model = _loaded(source, s)
    images, labels = _test_images(s, s.load_data())
    out.create()
    result = audit.masking_audit(
        model,
        images,
        labels,
        s.threat,
        s.audit,
        s.eval.eval_batch_size,
        s.train.seed,
        s.strategy(),
        spsa=s.spsa,
    )
    _, md = audit.write_audit(out.path, result, f"Gradient-masking audit of {source}")
    _record(s, out.path, "audit", evaluated=source)
    print(f"audit written to {md}")


def run_compare(s: Settings, run):
    """set --compare_runs beside the papers' published numbers (none: print the claims table)"""
    from lrm_tf.report import claims, compare

    if not FLAGS.compare_runs:
        print(claims.markdown(), end="")
        return
    try:
        rows = compare.compare_runs(FLAGS.compare_runs)
    except compare.CompareError as e:
        raise UsageError(f"--compare_runs: {e}") from None
    run.create()
    compare.write_comparison(run.path, rows)
    _record(s, run.path, "compare", runs=list(FLAGS.compare_runs))
    print(compare.compare_markdown(rows))
    print(f"comparison written to {run.path}")


# The reproduce command's own flags; every other flag it is given passes to each row's command.
REPRODUCE_FLAGS = ("mode", "table", "plan", "scale", "workers", "shard", "model_dir", "flagfile")


def run_reproduce(s: Settings, run):
    """a paper table: plan, run what is missing in dependency order, resume, lay out"""
    from lrm_tf.cli import flags as cli_flags
    from lrm_tf.reproduce import reproduce
    from lrm_tf.reproduce.runner import parse_shard

    if not FLAGS.table:
        raise UsageError("--mode=reproduce needs --table=<paper>_t<N> (e.g. lrm_t2) or --table=all")
    for flag, problem in (
        ("scale", not 0 < FLAGS.scale <= 1 and "must be in (0, 1]"),
        ("workers", FLAGS.workers < 1 and "must be at least 1"),
        ("shard", parse_shard(FLAGS.shard) is None and "expected i/n with 0 <= i < n, e.g. 0/2"),
    ):
        if problem:
            raise UsageError(f"--{flag}={cli_flags.show(FLAGS[flag].value)}: {problem}")
    extra = cli_flags.given(exclude=REPRODUCE_FLAGS)
    default_root = "runs" if FLAGS.scale == 1 else f"runs/scale_{FLAGS.scale:g}"
    root = FLAGS.model_dir if FLAGS["model_dir"].present else default_root
    if os.path.exists(root) and not os.path.isdir(root):
        raise UsageError(f"--model_dir={root}: not a folder (the table's runs go in it)")
    try:
        code = reproduce(
            FLAGS.table,
            root,
            scale=FLAGS.scale,
            extra=extra,
            plan_only=FLAGS.plan,
            workers=FLAGS.workers,
            shard=parse_shard(FLAGS.shard),
        )
    except (KeyError, ValueError) as e:
        raise UsageError(f"--table={FLAGS.table}: {e.args[0] if e.args else e}") from None
    except OSError as e:
        raise UsageError(f"--model_dir={root}: cannot write there ({e.strerror or e})") from None
    if code:
        raise SystemExit(code)


def run_export(s: Settings, run):
    """re-export the last checkpoint of --model_dir"""
    import tensorflow as tf

    from lrm_tf import export
    from lrm_tf.data import dataset_info

    if not run.has_checkpoint():
        raise UsageError(f"--model_dir={run.path}: no checkpoint to export")
    net = _build_net(s, dataset_info(s.data.dataset))
    ckpt = tf.train.Checkpoint(net=net)
    ckpt.restore(tf.train.latest_checkpoint(run.checkpoints)).expect_partial()
    export.export_saved_model(net, run.saved_model)
    export.save_keras(net, run.keras_file)
    _record(s, run.path, "export")
    print(f"exported {run.saved_model} and {run.keras_file}")


MODES = {
    "train": run_train,
    "eval": run_eval,
    "transfer": run_transfer,
    "analyze": run_analyze,
    "audit": run_audit,
    "compare": run_compare,
    "export": run_export,
    "reproduce": run_reproduce,
}

flags.DEFINE_enum(
    "mode",
    "train",
    list(MODES),
    "; ".join(f"{name}: {fn.__doc__.strip().splitlines()[0]}" for name, fn in MODES.items()),
)
