"""Checks that span several settings or look at the file system; each config checks its own
fields (`lrm_tf.config`). Every check raises `UsageError` naming the flag."""

from __future__ import annotations

import os

from lrm_tf.cli.flags import FLAGS, UsageError


def model_args() -> dict:
    """The model-shape flags given to the builder: those the user set, and the defaults of the
    ones the model takes (so `--model=resnet18 --depth=50` is an error, not ignored)."""
    from lrm_tf import models

    takes = models.model_arguments(FLAGS.model)
    return {name: FLAGS[name].value for name in ("depth", "width") if FLAGS[name].present or name in takes}


def check_model() -> None:
    from lrm_tf import models

    if FLAGS.model not in models.MODELS:
        raise UsageError(f"--model={FLAGS.model}: choose one of {', '.join(models.MODELS)}")
    for name in model_args():
        if name not in models.model_arguments(FLAGS.model):
            takers = [m for m in models.MODELS if name in models.model_arguments(m)]
            raise UsageError(
                f"--{name}={FLAGS[name].value}: {FLAGS.model} takes no {name} (only "
                f"{', '.join(takers) or 'no model'} does)"
            )


def check_objective(objective, threat, eval_attacks, num_classes: int, dataset: str) -> None:
    """The label-smoothing bound (needs the dataset's classes) and PGD's step against eps.

    Only evaluation attacks are held to step <= eps: a training attack may take larger steps
    (fast adversarial training's single step of 1.25 eps, Wong et al. 2020), and its step is
    --adv_train_eps_step, not --eps_step."""
    if objective.label_smoothing_form == "lrm" and objective.label_smoothing > 1 - 1 / num_classes:
        raise UsageError(
            f"--label_smoothing={objective.label_smoothing:g}: the lrm form needs s in "
            f"[0, 1 - 1/C] = [0, {1 - 1 / num_classes:.4g}] for {dataset}"
        )
    from lrm_tf import attacks

    for name in eval_attacks:
        spec = attacks.parse_attack(name)
        if spec.family == "pgd" and spec.norm == "linf" and threat.eps_step > threat.eps:
            raise UsageError(
                f"--eps_step={threat.eps_step:g} > --eps={threat.eps:g}: PGD's step must not exceed eps"
            )


def check_scale(settings) -> None:
    """L-inf budgets and steps beyond the input range (8 meant as 8/255) are refused; an eps
    beyond it is accepted only where every attack that uses it is L2 (a norm over all pixels,
    e.g. 1.5 on CIFAR-10)."""
    from lrm_tf import attacks
    from lrm_tf.config import ConfigError

    used = [a for a in settings.eval.eval_attacks if a != "clean"]
    if FLAGS.mode == "analyze":
        used.append(settings.analysis.analysis_attack)
    l2_only = {attacks.parse_attack(a).norm for a in used} == {"l2"}
    l2_only = l2_only and not settings.curves.curves and FLAGS.mode != "audit"
    train_norm = (
        attacks.parse_attack(settings.objective.adv_train).norm if settings.objective.adv_train else "none"
    )
    try:
        settings.threat.check_norm("l2" if l2_only else "linf")
        settings.train_threat.check_norm(train_norm)
    except ConfigError as e:
        raise UsageError(e.render("--")) from None


def check_jit(settings) -> None:
    """--jit_compile with a training step XLA cannot compile: one line before any training.
    XLA (CPU and GPU) has no kernel for Fingerprint, which keys every random start per example
    (attacks/_common.example_keys), nor for StatelessRandomGammaV3, mixup's Beta draw
    (BUILD_NOTES.md, GPU readiness check)."""
    from lrm_tf import attacks

    if not settings.train.jit_compile or FLAGS.mode != "train":
        return
    objective = settings.objective
    if objective.adv_train and attacks.parse_attack(objective.adv_train).rand_init:
        raise UsageError(
            f"--jit_compile cannot compile --adv_train={objective.adv_train}: XLA has no kernel for the "
            "per-example keys of its random start (Fingerprint); drop --jit_compile (--attack_xla_step "
            "compiles the attack's steps)"
        )
    if objective.mixup != "none":
        raise UsageError(
            f"--jit_compile cannot compile --mixup={objective.mixup}: XLA has no kernel for its Beta "
            "draw (StatelessRandomGammaV3); drop --jit_compile"
        )


def check_replicas(batch_size: int, replicas: int) -> None:
    if batch_size % replicas:
        raise UsageError(f"--batch_size={batch_size} must be divisible by the {replicas} replicas")


def check_paths() -> None:
    """Data folders, models to load and runs to compare exist."""
    from lrm_tf.report.rundir import check_local_path, is_run_dir, is_saved_model

    named = [("model_dir", FLAGS.model_dir), ("local_data", FLAGS.local_data)]
    named += [("load_from", p) for p in load_paths()]
    named += [(flag, p) for flag in ("transfer_targets", "compare_runs") for p in FLAGS[flag].value]
    for flag, path in named:
        try:
            check_local_path(path, f"--{flag}")
        except ValueError as e:
            raise UsageError(str(e)) from None
    if FLAGS.local_data and not os.path.isdir(FLAGS.local_data):
        raise UsageError(f"--local_data={FLAGS.local_data}: no such folder")
    if FLAGS.mode == "transfer" and not FLAGS.load_from:
        raise UsageError("--mode=transfer needs --load_from=<source>[,<source>...]")
    paths = load_paths() if FLAGS.mode == "transfer" else ([FLAGS.load_from] if FLAGS.load_from else [])
    for flag, group in (("load_from", paths), ("transfer_targets", FLAGS.transfer_targets)):
        for path in group:
            if not (is_run_dir(path) or is_saved_model(path)):
                raise UsageError(f"--{flag}={path}: not a run directory (flags.json) or a SavedModel")
            if FLAGS["mixed_precision"].present and not os.path.exists(os.path.join(path, "model.keras")):
                raise UsageError(
                    f"--mixed_precision={FLAGS.mixed_precision}: {path} has no model.keras, and a SavedModel "
                    "computes in the precision it was exported in; leave --mixed_precision out"
                )
    if FLAGS.mode == "compare":
        for path in FLAGS.compare_runs:
            if not os.path.isdir(path):
                raise UsageError(f"--compare_runs={path}: no such run directory")


def load_paths() -> list[str]:
    """--load_from as a list (transfer takes several)."""
    return [p for p in FLAGS.load_from.split(",") if p]
