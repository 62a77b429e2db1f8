"""A table's plan: every run with its status on disk, its command, and what it still costs.

Status of a run (`status_of`), read from its run directory under the plan's root:
  done     training: run_state.json says finished; eval/transfer: provenance.json holds the
           mode's record (written last, after the results).
  running  a runner's child runs it now (logs/<name>.lock: host, pid; a lock of this host whose
           process is gone is stale and ignored).
  partial  training with a complete checkpoint to resume from (the step from metrics.csv).
  failed   the runner recorded a failure (logs/<name>.json: exit status and last error line, or
           blocked because a run it reads failed), or the run stopped as not learning or
           diverging; a rerun tries it again.
  conflict the directory holds a run made with another --train_steps than the plan's command
           gives (another --scale, or a full-scale run under a reduced plan): never resumed or
           replaced by the plan; remove it or choose another root.
  missing  nothing yet.

Reduced scale (`scale_overrides`): `scale` < 1 trains every row for that fraction of its
iterations, its learning-rate schedule compressed with it (boundaries and warm-up converted
to steps and scaled), so a 2% run follows the paper's schedule shape; evaluation is unchanged
(`--eval_examples` on the reproduce command passes to every row). The scale is recorded in each
run's flags (`train_steps`) and in the table's outputs.

Cost (`estimate_hours`): the remaining hours of each run on the current device. A run with
measured step times (metrics.csv) is extrapolated from them; otherwise FLOPs / throughput: the
forward FLOPs per image of its model (forward_flops.json, written by benchmarks/gpu_cost.py
--write_flops from TensorFlow's profiler), times the passes of the cost model (training pass 3,
an attack's passes from `lrm_tf.eval.cost.attack_cost`), at the device's effective throughput
(DEVICE_TFLOPS: a range), calibrated by the plan's own measured runs where there are any.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import shlex
import shutil
from importlib import resources

from lrm_tf.reproduce.catalogue import FLAGS_DIR, RUNS, Job, jobs_for

STATUSES = ("done", "running", "partial", "missing", "failed", "conflict")
LOGS = "logs"  # the runner's folder under the root: <name>.log, <name>.json
# Effective TFLOP/s of these fp32 TensorFlow models, (low, high): one modern GPU as
# benchmarks/gpu_cost.py assumes (60-200), and the 2-core development CPU as measured there
# (26-66 GFLOP/s for mnist_cnn, resnet8, resnet_simple; BUILD_NOTES.md, GPU cost).
DEVICE_TFLOPS = {"gpu": (60.0, 200.0), "cpu": (0.026, 0.066)}


@dataclasses.dataclass
class PlannedRun:
    """One job of the plan with its run directory, status and command.

    Attributes:
      job: the catalogue job.
      run_dir: its run directory (absolute).
      status: one of STATUSES.
      detail: the step reached ("step 1200 of 6000"), or the failure's last error line.
      steps: training steps planned (None when the job does not train).
      args: the command's arguments after `python -m lrm_tf.main`.
      hours: remaining (low, high) hours on the device, once estimated.
      own: whether the job is a row of the table (else what a row needs).
      train_steps: the --train_steps value its command gives (0: the flagfile's epochs).
    """

    job: Job
    run_dir: str
    status: str
    detail: str
    steps: int | None
    args: list[str]
    hours: tuple[float, float] | None = None
    own: bool = True
    train_steps: int | None = None  # the --train_steps its command gives (0: epochs); None: no training

    @property
    def name(self) -> str:
        return self.job.name

    def command(self) -> str:
        """The command line a person can paste."""
        return "python -m lrm_tf.main " + " ".join(shlex.quote(a) for a in self.args)


def _value(job: Job, name: str, default: str | None = "") -> str | None:
    return job.overrides.get(name, job.flags.get(name, default))


def _floats(text: str) -> tuple:
    return tuple(float(v) for v in text.split(",") if v.strip())


# The optimisation settings a schedule needs, and how their flag text becomes a value.
_SCHEDULE = {
    "batch_size": int,
    "train_epochs": int,
    "train_steps": int,
    "lr_values": _floats,
    "lr_boundaries": _floats,
    "lr_warmup": float,
    "schedule_unit": str,
}


def train_config(job: Job):
    """A training job's schedule settings as the entry point resolves them: its flags over its
    dataset's recipe (`TrainConfig.for_dataset`), the library defaults under both."""
    from lrm_tf.config import DataConfig, TrainConfig

    given = {
        name: parse(_value(job, name))
        for name, parse in _SCHEDULE.items()
        if _value(job, name, None) is not None
    }
    return TrainConfig.for_dataset(_value(job, "dataset", DataConfig().dataset), **given)


def total_steps(job: Job) -> tuple[int, int]:
    """(steps per epoch, total training steps) of a training job (`steps_plan`, as training
    counts them).

    Raises:
      ValueError: unknown dataset or a batch larger than the training set.
    """
    from lrm_tf.config import DataConfig
    from lrm_tf.config.training import steps_plan
    from lrm_tf.data.registry import training_images

    dataset = _value(job, "dataset", DataConfig().dataset)
    n_train = training_images(dataset, extra=_value(job, "svhn_extra", "false").lower() == "true")
    limit = int(_value(job, "train_limit", "0"))
    try:
        return steps_plan(min(n_train, limit) if limit else n_train, train_config(job))
    except ValueError as e:
        raise ValueError(f"flags/{job.stem}.cfg: {e}") from None


def scale_overrides(job: Job, scale: float) -> dict[str, str]:
    """The flags that run a training job at `scale` of its iterations (see the module docstring).

    Args:
      job: a training job.
      scale: in (0, 1]; 1 changes nothing.

    Returns:
      {flag: text}: train_steps, and the schedule in steps (lr_boundaries, lr_warmup,
      schedule_unit).
    """
    if scale == 1 or not job.trains:
        return {}
    per_epoch, total = total_steps(job)
    cfg = train_config(job)
    per_unit = per_epoch if cfg.schedule_unit == "epochs" else 1
    return {
        "train_steps": str(max(1, round(total * scale))),
        "schedule_unit": "steps",
        "lr_boundaries": ",".join(f"{max(1, round(b * per_unit * scale))}" for b in cfg.lr_boundaries),
        "lr_warmup": f"{cfg.lr_warmup * per_unit * scale:g}",
    }


def _read_json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def last_step(run_dir: str) -> tuple[int, float]:
    """(the last step metrics.csv records, the seconds its rows add up to); (0, 0) when none."""
    step, seconds = 0, 0.0
    try:
        with open(os.path.join(run_dir, "metrics.csv"), newline="") as f:
            for row in csv.DictReader(f):
                step = int(float(row.get("step") or step))
                seconds += float(row.get("seconds") or 0)
    except (OSError, ValueError):
        return 0, 0.0
    return step, seconds


def failure_of(root: str, name: str) -> dict | None:
    """The runner's record of a job that did not finish: logs/<name>.json with a non-zero exit
    status, or marked blocked (a run it reads failed); None otherwise."""
    record = _read_json(os.path.join(root, LOGS, f"{name}.json"))
    if not isinstance(record, dict):
        return None
    return record if record.get("blocked") or record.get("returncode") not in (None, 0) else None


def lock_path(root: str, name: str) -> str:
    """logs/<name>.lock: held while a runner's child runs the job (host, pid, started)."""
    return os.path.join(root, LOGS, f"{name}.lock")


def lock_holder(root: str, name: str) -> dict | None:
    """Who runs the job now ({"host", "pid", "started"}), or None. A lock left by a process of
    this host that no longer exists (a killed runner) is stale: None."""
    import socket

    holder = _read_json(lock_path(root, name))
    if not isinstance(holder, dict):
        return None
    if holder.get("host") == socket.gethostname():
        try:
            os.kill(int(holder.get("pid", -1)), 0)
        except (OSError, ValueError):
            return None
    return holder


def _recorded_steps(run_dir: str) -> int | None:
    flags = _read_json(os.path.join(run_dir, "flags.json"))
    if not isinstance(flags, dict) or "train_steps" not in flags:
        return None
    return int(flags["train_steps"] or 0)


def status_of(
    job: Job, run_dir: str, root: str, steps: int | None, train_steps: int | None = None
) -> tuple[str, str]:
    """(status, detail) of one job's run (see the module docstring).

    Args:
      job: the job.
      run_dir: its run directory.
      root: the plan's root (logs/ is there).
      steps: the training steps the plan runs (for the detail of a partial run).
      train_steps: the --train_steps value the plan's command gives (0: the flagfile's epochs);
        a run directory whose flags.json records another holds another scale's run: conflict.
    """
    if job.trains:
        state = (_read_json(os.path.join(run_dir, "run_state.json")) or {}).get("status")
        recorded = _recorded_steps(run_dir)
        if state and train_steps is not None and recorded is not None and recorded != train_steps:
            wanted = f"{train_steps} steps" if train_steps else "the flagfile's epochs"
            have = f"{recorded} steps" if recorded else "the flagfile's epochs"
            return "conflict", f"holds a run of {have}, the plan needs {wanted} (another --scale?)"
        if state == "finished":
            return "done", ""
    else:
        provenance = _read_json(os.path.join(run_dir, "provenance.json")) or {}
        if job.mode in provenance:
            return "done", ""
    holder = lock_holder(root, job.name)
    if holder:
        return "running", f"on {holder.get('host')} (pid {holder.get('pid')}) since {holder.get('started')}"
    if job.trains and state in ("not_learning", "diverged"):
        return "failed", f"the training stopped: run_state.json says {state}"
    failure = failure_of(root, job.name)
    if failure:
        return "failed", failure.get("error") or f"exit status {failure['returncode']}"
    if job.trains and os.path.isfile(os.path.join(run_dir, "checkpoints", "checkpoint")):
        step, _ = last_step(run_dir)
        return "partial", f"step {step} of {steps}"
    return "missing", ""


def _shown(path: str) -> str:
    """A path as the commands show it: relative to the working directory when inside it (the
    runner starts every child there)."""
    relative = os.path.relpath(path)
    return path if relative.startswith("..") else relative


def job_args(job: Job, root: str, flags_dir: str, scale: float) -> list[str]:
    """The arguments of `python -m lrm_tf.main` that run `job` with its runs under `root`: its
    flagfile, then its overrides (the plan's flags for every row among them), then the scale's."""
    overrides = {**job.overrides, **scale_overrides(job, scale)}
    for flag in ("load_from", "transfer_targets"):
        paths = overrides.get(flag, job.flags.get(flag, ""))
        if paths:
            overrides[flag] = ",".join(_shown(os.path.join(root, p[len(RUNS) :])) for p in paths.split(","))
    overrides["model_dir"] = _shown(os.path.join(root, job.run))
    args = [f"--flagfile={_shown(os.path.join(flags_dir, job.stem + '.cfg'))}"]
    args += [f"--{k}={v}" for k, v in overrides.items()]
    return args


def make_plan(
    table: str,
    root: str,
    *,
    scale: float = 1.0,
    extra: dict[str, str] | None = None,
    flags_dir: str = FLAGS_DIR,
    published: dict | None = None,
) -> list[PlannedRun]:
    """Every run `table` needs, dependencies first, with its status and command.

    Args:
      table: a table id (`lrm_tf.reproduce.catalogue.tables`).
      root: the folder holding one run directory per job (runs/<stem> in the flagfiles).
      scale: fraction of the training iterations, in (0, 1].
      extra: flags given to every job ({name: text}, e.g. local_data, eval_examples); they
        override the flagfiles'.
      flags_dir: the flags/ folder.
      published: the published rows (default: lrm_tf/report/published.json).

    Returns:
      PlannedRuns in an order in which every run comes after the runs it reads.

    Raises:
      KeyError: unknown table. ValueError: scale outside (0, 1], or a broken catalogue.
    """
    if not 0 < scale <= 1:
        raise ValueError(f"scale {scale:g} must be in (0, 1]")
    root = os.path.abspath(root)
    jobs, own = jobs_for(table, flags_dir, published)
    plan = []
    for job in jobs:
        # The flags given to every row count as the row's own: its steps and schedule, scaled.
        job = dataclasses.replace(job, overrides={**job.overrides, **(extra or {})})
        run_dir = os.path.join(root, job.run)
        args = job_args(job, root, flags_dir, scale)
        steps = train_steps = None
        if job.trains:
            given = [a.split("=", 1)[1] for a in args if a.startswith("--train_steps=")]
            train_steps = int(given[-1] if given else job.flags.get("train_steps", "0") or 0)
            steps = train_steps or total_steps(job)[1]
        status, detail = status_of(job, run_dir, root, steps, train_steps)
        plan.append(
            PlannedRun(
                job, run_dir, status, detail, steps, args, own=job.name in own, train_steps=train_steps
            )
        )
    return plan


def device_kind() -> str:
    """'gpu' when an NVIDIA GPU is visible (without importing TensorFlow), else 'cpu'."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return "cpu"
    return "gpu" if shutil.which("nvidia-smi") or os.path.exists("/dev/nvidia0") else "cpu"


def forward_flops() -> dict[str, float]:
    """Forward FLOPs per image of each model/dataset pair ("resnet_simple/cifar10"), as
    benchmarks/gpu_cost.py --write_flops counted them."""
    text = resources.files("lrm_tf.reproduce").joinpath("forward_flops.json").read_text(encoding="utf-8")
    return {k: v for k, v in json.loads(text).items() if not k.startswith("_")}


def _hours(hours: tuple[float, float] | None) -> str:
    if hours is None:
        return "?"
    low, high = hours
    if high == 0:
        return "0"
    fmt = lambda h: f"{h * 60:.0f} min" if h < 1 else f"{h:.1f} h"  # noqa: E731
    return fmt(low) if abs(high - low) < 1e-9 else f"{fmt(low)} - {fmt(high)}"


def plan_markdown(table: str, plan: list[PlannedRun], root: str, scale: float, how: str = "") -> str:
    """The plan as Markdown: a line per run (what it needs, status, remaining cost), then the
    commands in order.

    Args:
      table: the table id.
      plan: the output of `make_plan` (hours set by `cost.estimate_hours`, else "?").
      root: the plan's root folder.
      scale: the fraction of the papers' training iterations.
      how: how the costs were estimated (a line).
    """
    counts = {s: sum(r.status == s for r in plan) for s in STATUSES}
    lines = [
        f"# Plan of {table}: {len(plan)} runs under {root}"
        + ("" if scale == 1 else f", at {scale:g} of the papers' training iterations"),
        "",
        ", ".join(f"{n} {s}" for s, n in counts.items() if n) + (f". Costs: {how}." if how else "."),
        "",
        "| # | run | mode | needs | status | cost left |",
        "|---:|---|---|---|---|---:|",
    ]
    position = {r.name: k + 1 for k, r in enumerate(plan)}
    for k, r in enumerate(plan, 1):
        needs = ", ".join(f"#{position[n]}" for n in r.job.needs if n in position) or "—"
        status = r.status + (f" ({r.detail})" if r.detail else "")
        role = "" if r.own else " (for a row)"
        lines.append(f"| {k} | `{r.name}`{role} | {r.job.mode} | {needs} | {status} | {_hours(r.hours)} |")
    total = [sum(r.hours[i] for r in plan if r.hours) for i in (0, 1)]
    lines += [
        "",
        f"Total left: {_hours(tuple(total))}"
        + (" (some runs unknown)" if any(r.hours is None for r in plan) else ""),
        "",
    ]
    lines += ["Commands, in order:", ""] + [f"{k}. `{r.command()}`" for k, r in enumerate(plan, 1)]
    return "\n".join(lines) + "\n"
