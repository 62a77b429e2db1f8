"""What a planned run still costs on the current device, in hours (a (low, high) range).

The units are forward passes of one image (F FLOPs, per model and dataset in
forward_flops.json, counted by TensorFlow's profiler through benchmarks/gpu_cost.py
--write_flops): a training pass is 3 F per image (forward, backward to activations and to
weights), doubled when the objective also runs the clean images beside the adversarial ones
(`lrm_tf.objectives.terms.needs_clean_logits`); an attack costs `lrm_tf.eval.cost.attack_cost`
passes per example (the same model the progress estimates of evaluation use). A transfer row
attacks each source and classifies the examples once per target. Hours = FLOPs / the device's
effective throughput (`plan.DEVICE_TFLOPS`), or, for the training of a run with measured step
times (metrics.csv), the remaining steps at its own measured pace; measured runs also calibrate
the throughput of the others (their median, a single value then). Rough by design: it orders
and sizes the work, it does not promise a finishing time. Imports TensorFlow (the attack
grammar).
"""

from __future__ import annotations

import dataclasses
import os
import statistics

from lrm_tf.reproduce.plan import DEVICE_TFLOPS, PlannedRun, device_kind, forward_flops, last_step

TRAIN_PASS = 3.0


def _values(run: PlannedRun) -> dict:
    """The job's flags parsed by the entry point's own flag parsers, defaults filled in."""
    import lrm_tf.main  # noqa: F401  (defines the flags)
    from lrm_tf.cli.flags import FLAGS

    values = {name: FLAGS[name].default for name in FLAGS}
    for arg in run.args:
        name, _, text = arg[2:].partition("=")
        if name == "flagfile":
            continue
        values[name] = FLAGS[name].parser.parse(text) if name in FLAGS else text
    for name, text in {**run.job.flags, **run.job.overrides}.items():
        if name in FLAGS and not any(a.startswith(f"--{name}=") for a in run.args):
            values[name] = FLAGS[name].parser.parse(text)
    return values


def model_key(values: dict) -> str:
    """How forward_flops.json names the model of a run: model/dataset, wide_resnet with its
    depth and width."""
    model = values["model"]
    if model == "wide_resnet":
        model = f"wide_resnet-{values['depth']}-{values['width']}"
    return f"{model}/{values['dataset']}"


def _config(cls, values: dict):
    fields = [f.name for f in dataclasses.fields(cls)]
    return cls(**{n: values[n] for n in fields if n in values})


def _attack_passes(name: str, values: dict) -> float:
    from lrm_tf.config import Threat
    from lrm_tf.eval.cost import attack_cost

    return attack_cost(name, _config(Threat, values))


def _examples(values: dict, attack: str) -> int:
    from lrm_tf.data.registry import dataset_info

    test = dataset_info(values["dataset"]).test_size
    n = min(values["eval_examples"] or test, test)
    return min(n, values["spsa_examples"]) if attack.startswith("spsa") and values["spsa_examples"] else n


def run_flops(run: PlannedRun, plan: dict[str, PlannedRun], flops: dict[str, float]) -> tuple[float, float]:
    """(training FLOPs per step, evaluation FLOPs) of one run.

    Raises:
      KeyError: a model/dataset pair with no count in forward_flops.json.
    """
    from lrm_tf.config import Objective
    from lrm_tf.objectives import terms

    values = _values(run)

    def forward_of(name: str) -> float:
        return flops[model_key(_values(plan[name]))] if name in plan else flops[model_key(values)]

    if run.job.trains:
        units = TRAIN_PASS * (2 if terms.needs_clean_logits(_config(Objective, values)) else 1)
        if values["adv_train"]:
            units += _attack_passes(values["adv_train"], {**values, "restarts": 1}) - 1
        per_step = values["batch_size"] * units * forward_of(run.name)
    else:
        per_step = 0.0
    evaluation = 0.0
    attacks = [a for a in values["eval_attacks"] if run.job.mode != "transfer" or a != "clean"]
    if run.job.mode == "transfer":
        # Run directories are <root>/<job name> for every training job.
        sources = [os.path.basename(os.path.normpath(p)) for p in values["load_from"].split(",") if p]
        targets = [os.path.basename(os.path.normpath(t)) for t in values["transfer_targets"]] or sources
        for attack in attacks:
            n = _examples(values, attack)
            for source in sources:
                evaluation += n * _attack_passes(attack, values) * forward_of(source)
                evaluation += n * sum(forward_of(t) for t in targets)
    else:
        model = run.job.needs[0] if run.job.mode == "eval" and run.job.needs else run.name
        for attack in attacks:
            evaluation += _examples(values, attack) * _attack_passes(attack, values) * forward_of(model)
    return per_step, evaluation


def estimate_hours(plan: list[PlannedRun], device: str | None = None) -> str:
    """Sets each run's `hours` (remaining, (low, high)); returns how they were estimated.

    Args:
      plan: the output of `make_plan`.
      device: 'gpu' or 'cpu' (default: `device_kind()`).

    Returns:
      One line naming the device and the throughput used (assumed or measured).
    """
    kind = device or device_kind()
    low, high = DEVICE_TFLOPS[kind]
    flops = forward_flops()
    by_name = {r.name: r for r in plan}
    costs, done, paces = {}, {}, []
    for run in plan:
        try:
            costs[run.name] = run_flops(run, by_name, flops)
        except KeyError:
            costs[run.name] = None
        done[run.name] = step, seconds = last_step(run.run_dir) if run.job.trains else (0, 0.0)
        if costs[run.name] and step and seconds > 0:
            paces.append(costs[run.name][0] * step / seconds / 1e12)
    how = f"{kind}, {low:g}-{high:g} effective TFLOP/s assumed"
    if paces:
        low = high = statistics.median(paces)
        how = f"{kind}, {low:.3g} effective TFLOP/s measured on {len(paces)} run(s) of this plan"
    for run in plan:
        if run.status == "done":
            run.hours = (0.0, 0.0)
            continue
        if costs[run.name] is None:
            run.hours = None
            continue
        per_step, evaluation = costs[run.name]
        step, seconds = done[run.name]
        left = max((run.steps or 0) - step, 0)
        if step and seconds > 0:
            train = (left * seconds / step / 3600,) * 2
        else:
            train = (left * per_step / (high * 1e12) / 3600, left * per_step / (low * 1e12) / 3600)
        run.hours = (
            train[0] + evaluation / (high * 1e12) / 3600,
            train[1] + evaluation / (low * 1e12) / 3600,
        )
    return how
