"""Runs a plan: what is not done, in dependency order, on several workers or hosts.

Each job is a child process, `python -m lrm_tf.main <its args>` (the job's flagfile plus the
plan's flags), with its output in `<root>/logs/<name>.log` and its outcome in
`<root>/logs/<name>.json` (exit status, the last error line, start and end times, worker).
A child dies with the runner (Linux: PR_SET_PDEATHSIG), so a killed table leaves no orphan
writing into a run directory; rerunning the same command resumes: finished runs are skipped,
a partial training continues from its last checkpoint (the entry point's own resume), a failed
or missing one starts again.

Workers: up to `workers` jobs at once, each started once everything it reads is done. With
GPUs, worker k sees one GPU (CUDA_VISIBLE_DEVICES, round robin over the visible ones); a job
that needs several devices itself uses the tf.distribute strategy flags instead. Hosts:
`shard=(i, n)` gives host i every n-th job of the plan (the plan's order is the same on every
host); a job reading another host's run waits for it on the shared root, polling its status.
A failed job is reported and the jobs that read it are reported as blocked; the rest still run.
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import signal
import socket
import subprocess
import sys
import time

from lrm_tf import killpoints
from lrm_tf.report.rundir import write_json_atomic
from lrm_tf.reproduce.plan import LOGS, PlannedRun, failure_of, lock_holder, lock_path, status_of

BLOCKED = "blocked"


def _die_with_parent() -> None:  # pragma: no cover (runs in the child)
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):
        pass


def visible_gpus() -> list[str]:
    """The GPU ids a child may be given (CUDA_VISIBLE_DEVICES, else `nvidia-smi -L`); [] on CPUs."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        return [g for g in env.split(",") if g.strip() and g.strip() != "-1"]
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(out.splitlines()) if line.startswith("GPU ")]


def last_error(log_path: str) -> str:
    """The line a failed child ended with: its last 'error' line, else its last line, from the
    last attempt only (the log keeps every attempt, each after a '=== ' header)."""
    try:
        with open(log_path, errors="replace") as f:
            text = f.read()[-200_000:]
    except OSError:
        return ""
    attempt = text.rsplit("\n=== ", 1)[-1].split("\n", 1)[-1] if "\n=== " in text else text
    lines = [line.strip() for line in attempt.splitlines() if line.strip()]
    errors = [line for line in lines if "error" in line.lower()]
    return (errors or lines or [""])[-1][:300]


def _acquire(root: str, name: str) -> bool:
    """Takes logs/<name>.lock for this process (False: another live runner holds it); a stale
    lock (its process of this host is gone) is replaced."""
    path = lock_path(root, name)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    for _ in range(2):
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        except FileExistsError:
            if lock_holder(root, name) is not None:
                return False
            with contextlib.suppress(FileNotFoundError):
                os.remove(path)
            continue
        with os.fdopen(fd, "w") as f:
            json.dump({"host": socket.gethostname(), "pid": os.getpid(), "started": _now()}, f)
        return True
    return False


def _release(root: str, name: str) -> None:
    with contextlib.suppress(FileNotFoundError):
        os.remove(lock_path(root, name))


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


class _Child:
    def __init__(self, run: PlannedRun, root: str, worker: int, gpus: list[str]):
        self.run, self.worker = run, worker
        os.makedirs(os.path.join(root, LOGS), exist_ok=True)
        self.log_path = os.path.join(root, LOGS, f"{run.name}.log")
        self.record_path = os.path.join(root, LOGS, f"{run.name}.json")
        env = dict(os.environ)
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[worker % len(gpus)]
        self.started, self.t0 = _now(), time.time()
        with open(self.log_path, "a") as log:
            log.write(f"\n=== {self.started} {run.command()}\n")
            log.flush()
            self.process = subprocess.Popen(
                [sys.executable, "-m", "lrm_tf.main", *run.args],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                preexec_fn=_die_with_parent if sys.platform.startswith("linux") else None,
            )

    def finish(self) -> dict:
        code = self.process.returncode
        record = {
            "name": self.run.name,
            "returncode": code,
            "error": "" if code == 0 else last_error(self.log_path) or f"exit status {code}",
            "started": self.started,
            "ended": _now(),
            "seconds": round(time.time() - self.t0, 1),
            "t_start": self.t0,  # epoch seconds: when rows overlapped (workers)
            "t_end": time.time(),
            "worker": self.worker,
            "command": self.run.command(),
        }
        write_json_atomic(self.record_path, record)
        return record


def parse_shard(text: str) -> tuple[int, int] | None:
    """(i, n) of a shard written 'i/n' with 0 <= i < n, else None."""
    parts = text.split("/")
    if len(parts) != 2 or not all(p.strip().isdigit() for p in parts):
        return None
    index, count = int(parts[0]), int(parts[1])
    return (index, count) if 0 <= index < count else None


def run_plan(
    plan: list[PlannedRun],
    root: str,
    *,
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    poll_seconds: float = 10.0,
    echo=print,
) -> dict[str, dict]:
    """Runs every job of `plan` that is not done (see the module docstring).

    Args:
      plan: the output of `make_plan` (statuses as read then).
      root: the plan's root folder.
      workers: jobs at once on this host (>= 1).
      shard: (i, n): this host runs the jobs at positions i, i + n, ... of the plan.
      poll_seconds: how often to look at the runs of other hosts while waiting for them.
      echo: where the progress lines go.

    Returns:
      {job name: outcome} for this host's jobs: the runner's record of a job it ran, or
      {"status": "done" | "blocked" | "conflict", "error": ...} for one it did not run.

    Raises:
      ValueError: workers < 1 or a shard outside 0 <= i < n.
    """
    index, count = shard
    if workers < 1:
        raise ValueError(f"workers must be at least 1, got {workers}")
    if not 0 <= index < count:
        raise ValueError(f"shard {index}/{count}: need 0 <= i < n")
    started_at = time.time()
    by_name = {r.name: r for r in plan}
    mine_names = {r.name for k, r in enumerate(plan) if k % count == index}
    # Runs this runner does not run (another host's share, or one another runner holds): polled.
    # A failure they recorded before this runner started is stale: their runner retries it.
    watched = {r.name for r in plan if r.name not in mine_names}
    status = {r.name: ("done" if r.status == "done" else "pending") for r in plan}
    outcomes: dict[str, dict] = {}
    for r in plan:
        if r.name in mine_names and r.status in ("done", "conflict"):
            outcomes[r.name] = {"status": r.status, "error": r.detail}
            status[r.name] = r.status
    pending = [r for r in plan if r.name in mine_names and r.name not in outcomes]
    gpus = visible_gpus()
    running: dict[str, _Child] = {}
    free = list(range(workers))
    last_poll = 0.0
    gpu_text = f", GPUs {','.join(gpus)}" if gpus else ""
    echo(f"reproduce: {len(pending)} of {len(mine_names)} runs to do, {workers} worker(s){gpu_text}")

    def poll(name: str) -> None:
        run = by_name[name]
        found, _ = status_of(run.job, run.run_dir, root, run.steps, run.train_steps)
        if found == "failed":
            record = failure_of(root, name) or {}
            if float(record.get("t_end") or 0) < started_at:
                found = "pending"  # stale: its runner tries it again
        status[name] = found if found in ("done", "failed", "conflict") else "pending"

    def block(run: PlannedRun, bad: list[str]) -> None:
        error = f"blocked: needs {', '.join(bad)}, which did not finish"
        record = {"name": run.name, "returncode": None, "blocked": True, "error": error, "t_end": time.time()}
        write_json_atomic(os.path.join(root, LOGS, f"{run.name}.json"), record)
        status[run.name] = "failed"  # for what needs it, here and on other hosts
        outcomes[run.name] = {"status": BLOCKED, "error": error}
        echo(f"blocked {run.name}: needs {', '.join(bad)}")

    while pending or running:
        for name, child in list(running.items()):
            if child.process.poll() is None:
                continue
            record = child.finish()
            _release(root, name)
            del running[name]
            free.append(child.worker)
            outcomes[name] = record
            ok = record["returncode"] == 0
            status[name] = "done" if ok else "failed"
            error = "" if ok else f": {record['error']}"
            minutes = record["seconds"] / 60
            echo(f"[{record['ended']}] {'done' if ok else 'FAILED'} {name} ({minutes:.1f} min){error}")
            killpoints.hit("reproduce_row")
        if time.time() - last_poll >= poll_seconds:
            for name in watched:
                if status[name] == "pending":
                    poll(name)
            last_poll = time.time()
        for r in list(pending):
            needs = [n for n in r.job.needs if n in by_name]
            bad = [n for n in needs if status[n] in ("failed", "conflict")]
            if bad:
                pending.remove(r)
                block(r, bad)
                continue
            if any(status[n] != "done" for n in needs):
                continue
            if not free:
                break
            pending.remove(r)
            if not _acquire(root, r.name):  # another runner on this root runs it: wait for it
                watched.add(r.name)
                outcomes[r.name] = {"status": "running elsewhere", "error": ""}
                echo(f"{r.name}: another runner holds {lock_path(root, r.name)}; waiting for it")
                continue
            worker = free.pop(0)
            running[r.name] = _Child(r, root, worker, gpus)
            status[r.name] = "running"
            what = f"from {r.detail}" if r.status == "partial" else ""
            echo(f"[{running[r.name].started}] start {r.name} (worker {worker}) {what}".rstrip())
        if running:
            time.sleep(0.2)
        elif pending:
            time.sleep(poll_seconds)
    return outcomes


def _time_note(plan: list[PlannedRun], root: str) -> str:
    """How long the table's runs took, from the runner's records (the last attempt of each)."""
    seconds, counted = 0.0, 0
    for run in plan:
        try:
            with open(os.path.join(root, LOGS, f"{run.name}.json")) as f:
                record = json.load(f)
        except (OSError, ValueError):
            continue
        seconds += float(record.get("seconds") or 0)
        counted += 1
    if not counted:
        return ""
    hours = seconds / 3600
    return f"Run time: {hours:.2f} h over {counted} of {len(plan)} runs (sum of each run's last attempt)."


def reproduce(
    table: str,
    root: str,
    *,
    scale: float = 1.0,
    extra: dict[str, str] | None = None,
    plan_only: bool = False,
    workers: int = 1,
    shard: tuple[int, int] = (0, 1),
    flags_dir: str | None = None,
    published: dict | None = None,
    echo=print,
    poll_seconds: float = 10.0,
) -> int:
    """Plans a table, runs what is missing (unless `plan_only`) and writes the table.

    Args:
      table: a table id (`lrm_tf.reproduce.catalogue.tables`).
      root: the folder of the table's run directories; the plan, logs/ and
        reproduce_<table>.md/.json are written there.
      scale: fraction of the papers' training iterations, in (0, 1].
      extra: flags given to every row ({name: text}).
      plan_only: print the plan (with cost estimates) and run nothing.
      workers, shard, poll_seconds: see `run_plan`.
      flags_dir: the flags/ folder (default: the repository's).
      published: the published rows (default: lrm_tf/report/published.json).
      echo: where the progress and the tables go.

    Returns:
      0 when every row of the table is done, 1 otherwise (a row failed, was blocked or is
      another host's and not finished yet), so a script can tell.

    Raises:
      KeyError: unknown table. ValueError: bad scale, workers or shard, or a broken catalogue.
    """
    from lrm_tf.reproduce import catalogue, cost, layout
    from lrm_tf.reproduce.plan import make_plan, plan_markdown

    flags_dir = flags_dir or catalogue.FLAGS_DIR
    root = os.path.abspath(root)

    def planned():
        return make_plan(table, root, scale=scale, extra=extra, flags_dir=flags_dir, published=published)

    plan = planned()
    if plan_only:
        how = cost.estimate_hours(plan)
        echo(plan_markdown(table, plan, root, scale, how), end="")
        return 0
    run_plan(plan, root, workers=workers, shard=shard, poll_seconds=poll_seconds, echo=echo)
    plan = planned()  # statuses as the runs left them
    rows = layout.table_rows(plan, published)
    _, md = layout.write_table(root, table, rows, scale, note=_time_note(plan, root))
    with open(md) as f:
        echo("\n" + f.read(), end="")
    echo(f"table written to {md}")
    return 0 if all(r["status"] == "done" for r in rows) else 1
