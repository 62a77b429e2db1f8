"""--mode=reproduce (lrm_tf.reproduce): the plan of a real table, and a whole toy table run end
to end on the digits data (trainings, a transfer row, a derived black-box column, a failing row),
killed in the middle and rerun, and run with two workers."""

import contextlib
import io
import json
import os
import subprocess
import sys

import pytest
from run_utils import REPO, run_main

from lrm_tf.reproduce import catalogue, plan
from lrm_tf.reproduce.catalogue import table_ids

# ----------------------------------------------------------------------------- the real catalogue


def test_table_ids_read_the_table_cells():
    def ids(paper, cell):
        return table_ids({"paper": paper, "table": cell})

    assert ids("shafahi", "2 (= 6) and 1") == ["shafahi_t2", "shafahi_t6", "shafahi_t1"]
    assert ids("lrm", "2 (source)") == ["lrm_t2"]
    assert ids("lrm", "2 (sec. 5.3 text)") == ["lrm_t2"]
    assert ids("lrm_draft", "1 and sec. 5.3") == ["lrm_draft_t1"]
    assert ids("poster", "CIFAR-100 Logit-Squeezing") == ["poster_cifar100"]
    assert ids("poster", "CIFAR-10 Logit-Similarity (gamma = 1)") == ["poster_cifar10"]
    assert ids("poster", "Robustness on Other Attacks") == ["poster_other"]


def test_every_table_of_the_catalogue_plans(tmp_path):
    for table in catalogue.tables():
        runs = plan.make_plan(table, str(tmp_path))
        names = [r.name for r in runs]
        for k, r in enumerate(runs):  # dependencies come first
            assert all(n in names[:k] for n in r.job.needs), (table, r.name)


def test_lrm_t2_plan_lists_sources_targets_and_transfers_with_costs(tmp_path):
    proc = run_main(
        "--mode=reproduce", "--table=lrm_t2", "--plan", f"--model_dir={tmp_path}", env={"LRM_TF_DATA": ""}
    )
    out = proc.stdout
    rows = [line for line in out.splitlines() if line.startswith("| ") and "`" in line]
    assert len(rows) == 16
    sources = [r for r in rows if "lrm_bbsource_cifar10_" in r]
    transfers = [r for r in rows if "| transfer |" in r]
    assert len(sources) == 5 and len(transfers) == 6
    assert sum("lrm_t1_cifar10_" in r and "| train |" in r for r in rows) == 5
    for r in transfers[:5]:  # each table-2 row reads the five sources and its own target
        assert "#1, #2, #3, #4, #5, #" in r
    assert all("| missing |" in r for r in rows)
    assert all(not r.rstrip(" |").endswith("?") for r in rows)  # every run has a cost
    assert "Costs: cpu" in out and "Commands, in order:" in out
    assert not os.listdir(tmp_path)  # the plan runs and writes nothing


def test_scale_compresses_the_schedule():
    job = catalogue.read_job("lrm_t1_cifar10_regular")  # 200 epochs of 390 steps, x0.1 at 100, 150
    over = plan.scale_overrides(job, 0.02)
    assert over["train_steps"] == str(round(200 * 390 * 0.02))
    assert over["schedule_unit"] == "steps"
    assert over["lr_boundaries"] == "780,1170"
    assert over["lr_warmup"] == f"{5 * 390 * 0.02:g}"
    assert plan.scale_overrides(job, 1.0) == {}
    madry = catalogue.read_job("shafahi_t2_mnist_smooth_a0.95_s0.3_k2m")  # 2M steps, no boundaries
    assert plan.scale_overrides(madry, 0.02)["train_steps"] == "40000"
    with pytest.raises(ValueError, match="scale"):
        plan.make_plan("lrm_t1", "/tmp/nowhere", scale=1.5)


def test_status_of_a_run_directory(tmp_path):
    job = catalogue.read_job("shafahi_t1_mnist_natural")
    run = tmp_path / job.run
    status = lambda steps=None: plan.status_of(job, str(run), str(tmp_path), steps)  # noqa: E731
    assert status() == ("missing", "")
    (run / "checkpoints").mkdir(parents=True)
    (run / "checkpoints" / "checkpoint").write_text("x")
    (run / "metrics.csv").write_text("epoch,step,seconds\n1,600,30\n2,1200,30\n")
    assert status() == ("partial", "step 1200 of None")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / f"{job.name}.json").write_text(
        json.dumps({"returncode": 3, "error": "error: no data"})
    )
    assert status() == ("failed", "error: no data")
    (run / "run_state.json").write_text(json.dumps({"status": "finished"}))
    assert status() == ("done", "")
    (run / "flags.json").write_text(json.dumps({"train_steps": 2000}))
    assert plan.status_of(job, str(run), str(tmp_path), 2000, 2000) == ("done", "")
    for other in (40, 0):  # another --scale's run, or a reduced run under a full-scale plan
        assert plan.status_of(job, str(run), str(tmp_path), other, other)[0] == "conflict"
    (run / "run_state.json").write_text(json.dumps({"status": "training"}))
    (tmp_path / "logs" / f"{job.name}.lock").write_text(json.dumps({"host": "elsewhere", "pid": 1}))
    assert plan.status_of(job, str(run), str(tmp_path), 2000, 2000)[0] == "running"


def test_bad_reproduce_flags_are_one_line_errors():
    from lrm_tf import main

    for flags, message in [
        ([], "needs --table"),
        (["--table=lrm_t9"], "unknown table 'lrm_t9'"),
        (["--table=lrm_t1", "--shard=2/2"], "--shard=2/2"),
        (["--table=lrm_t1", "--scale=0"], "--scale=0"),
        (["--table=lrm_t1", "--workers=0"], "--workers=0"),
        (["--table=lrm_t1", f"--model_dir={__file__}"], "not a folder"),
    ]:
        stderr = io.StringIO()
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            code = main.run_argv(["lrm_tf", "--mode=reproduce", *flags, "--plan"])
        lines = [line for line in stderr.getvalue().splitlines() if line.strip()]
        assert code == 2 and len(lines) == 1 and message in lines[0], stderr.getvalue()


# ----------------------------------------------------------------------------- a toy table, end to end

TRAIN = [
    "--dataset=digits",
    "--model=mnist_cnn",
    "--batch_size=32",
    "--optimizer=momentum",
    "--lr_values=0.05",
    "--lr_boundaries=",
    "--weight_decay=1e-4",
    "--train_steps=40",
    "--eval_examples=48",
    "--eval_attacks=clean,fgsm_xent",
    "--eps=0.1",
    "--eps_step=0.1",
    "--deterministic",
    "--verbose=0",
    "--nostop_if_not_learning",
]
FLAGFILES = {
    "toy_t1_a": [*TRAIN, "--mode=train", "--model_dir=runs/toy_t1_a"],
    "toy_bbsource": [*TRAIN, "--mode=train", "--seed=1", "--model_dir=runs/toy_bbsource"],
    "toy_t1_b": [*TRAIN, "--mode=train", "--label_smoothing=0.1", "--model_dir=runs/toy_t1_b"],
    "toy_t1_bb": [
        *TRAIN,
        "--mode=transfer",
        "--load_from=runs/toy_bbsource",
        "--transfer_targets=runs/toy_t1_a",
        "--eval_attacks=fgsm_xent",
        "--model_dir=runs/toy_t1_bb",
    ],
    "toy_t1_broken": [
        *TRAIN,
        "--mode=train",
        "--local_data=/nonexistent/data",
        "--model_dir=runs/toy_t1_broken",
    ],
}
PUBLISHED = {
    "toy_t1_a": {
        "paper": "toy",
        "table": "1",
        "row": "A",
        "dataset": "digits",
        "results": {"clean": 90, "fgsm_xent": 20},
    },
    "toy_bbsource": {
        "paper": "toy",
        "table": "1 (source)",
        "row": "source",
        "dataset": "digits",
        "results": {},
    },
    "toy_t1_b": {
        "paper": "toy",
        "table": "1",
        "row": "B",
        "dataset": "digits",
        "results": {"clean": 91, "fgsm_xent": 30, "blackbox:toy_bbsource:fgsm_xent": 50},
    },
    "toy_t1_bb": {
        "paper": "toy",
        "table": "1",
        "row": "transfer to A",
        "dataset": "digits",
        "target": "toy_t1_a",
        "results": {"blackbox:toy_bbsource:fgsm_xent": 60},
    },
    "toy_t1_broken": {
        "paper": "toy",
        "table": "1",
        "row": "broken",
        "dataset": "digits",
        "results": {"clean": 99},
    },
}
DRIVER = """
import json, sys
from lrm_tf.reproduce import reproduce
flags_dir, root, workers = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(flags_dir + "/published.json") as f:
    published = json.load(f)
sys.exit(reproduce("toy_t1", root, flags_dir=flags_dir, published=published, workers=workers))
"""


@pytest.fixture(scope="module")
def toy_flags(tmp_path_factory):
    folder = tmp_path_factory.mktemp("toy_flags")
    for stem, lines in FLAGFILES.items():
        (folder / f"{stem}.cfg").write_text("\n".join(lines) + "\n")
    (folder / "published.json").write_text(json.dumps(PUBLISHED))
    return str(folder)


def _reproduce(flags_dir, root, workers=1, env=None):
    return subprocess.run(
        [sys.executable, "-c", DRIVER, flags_dir, str(root), str(workers)],
        capture_output=True,
        text=True,
        timeout=900,
        cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})},
    )


def _table(root):
    with open(os.path.join(root, "reproduce_toy_t1.json")) as f:
        return json.load(f)


def _record(root, name):
    with open(os.path.join(root, "logs", f"{name}.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def two_workers(toy_flags, tmp_path_factory):
    root = tmp_path_factory.mktemp("toy_two_workers")
    proc = _reproduce(toy_flags, root, workers=2)
    return root, proc


def test_toy_table_runs_end_to_end_with_two_workers(two_workers):
    root, proc = two_workers
    assert proc.returncode == 1, proc.stdout + proc.stderr  # the broken row fails the table
    rows = {r["stem"]: r for r in _table(root)["rows"]}
    assert set(rows) == {"toy_t1_a", "toy_t1_b", "toy_t1_bb", "toy_t1_broken"}  # the source has no numbers
    assert rows["toy_t1_broken"]["status"] == "failed"
    assert "--local_data=/nonexistent/data" in rows["toy_t1_broken"]["error"]
    for stem in ("toy_t1_a", "toy_t1_b", "toy_t1_bb"):
        assert rows[stem]["status"] == "done"
        assert all(c["ours"] is not None for c in rows[stem]["cells"].values()), rows[stem]
    assert rows["toy_t1_b"]["cells"]["blackbox:toy_bbsource:fgsm_xent"]["published"] == 50
    assert "worst_case" in rows["toy_t1_a"]["cells"]  # measured columns beside the paper's
    md = open(os.path.join(root, "reproduce_toy_t1.md")).read()
    assert "| A (`toy_t1_a`) |" in md and " / 90 |" in md and "bb toy_bbsource/fgsm_xent" in md
    # Two independent trainings ran at the same time.
    spans = [
        (_record(root, n)["t_start"], _record(root, n)["t_end"])
        for n in ("toy_t1_a", "toy_bbsource", "toy_t1_b")
    ]
    assert any(a[0] < b[1] and b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1 :])
    assert {_record(root, n)["worker"] for n in ("toy_t1_a", "toy_bbsource", "toy_t1_b")} == {0, 1}


def test_killed_table_resumes_without_retraining_and_ends_equal(toy_flags, two_workers, tmp_path):
    reference, _ = two_workers
    root = tmp_path / "killed"
    # The runner kills itself once its second row's outcome is recorded (one worker).
    killed = _reproduce(toy_flags, root, env={"LRM_TF_KILL_AT": "reproduce_row:2"})
    assert killed.returncode == -9, killed.stdout + killed.stderr
    assert not os.path.exists(root / "reproduce_toy_t1.json")
    finished = {n: _record(root, n) for n in ("toy_t1_a", "toy_bbsource")}
    assert all(r["returncode"] == 0 for r in finished.values())
    rerun = _reproduce(toy_flags, root)
    assert rerun.returncode == 1, rerun.stdout + rerun.stderr
    for name, record in finished.items():  # not run again
        assert _record(root, name) == record
        assert open(root / "logs" / f"{name}.log").read().count("\n=== ") == 1
    assert "start toy_t1_a" not in rerun.stdout and "start toy_t1_b" in rerun.stdout
    ours, theirs = _table(root), _table(reference)  # one worker, killed and resumed == two workers
    assert ours["rows"] == theirs["rows"]
    # A third run finds everything done except the broken row, and runs only that.
    again = _reproduce(toy_flags, root)
    started = [line for line in again.stdout.splitlines() if "] start " in line]
    assert len(started) == 1 and "toy_t1_broken" in started[0], again.stdout


def test_every_model_of_the_catalogue_has_a_flop_count():
    from lrm_tf.reproduce import cost

    counts = plan.forward_flops()
    runs = plan.make_plan("all", "/tmp/nowhere")
    for run in (r for r in runs if r.job.trains):
        key = cost.model_key(cost._values(run))
        assert key in counts, f"{run.name}: {key} missing: python benchmarks/gpu_cost.py --write_flops"


# ----------------------------------------------------------------------------- the runner across hosts


class _InstantChild:
    """Stands in for a child process: the job 'runs' at once and leaves what a real run leaves."""

    def __init__(self, run, root, worker, gpus):
        from lrm_tf.report.rundir import write_json_atomic

        self.run, self.worker, self.root = run, worker, root
        os.makedirs(run.run_dir, exist_ok=True)
        if run.job.trains:
            write_json_atomic(os.path.join(run.run_dir, "flags.json"), {"train_steps": run.train_steps})
            write_json_atomic(os.path.join(run.run_dir, "run_state.json"), {"status": "finished"})
        else:
            write_json_atomic(os.path.join(run.run_dir, "provenance.json"), {run.job.mode: {}})
        self.process = type("P", (), {"poll": lambda self: 0, "returncode": 0})()
        self.started = "now"

    def finish(self):
        import time

        from lrm_tf.report.rundir import write_json_atomic

        record = {"name": self.run.name, "returncode": 0, "error": "", "ended": "now", "seconds": 0.0}
        record["t_end"] = time.time()
        write_json_atomic(os.path.join(self.root, "logs", f"{self.run.name}.json"), record)
        return record


def _host(toy_flags, root, shard, monkeypatch, poll=0.05):
    import threading

    from lrm_tf.reproduce import runner

    monkeypatch.setattr(runner, "_Child", _InstantChild)
    with open(os.path.join(toy_flags, "published.json")) as f:
        published = json.load(f)
    plan_ = plan.make_plan("toy_t1", str(root), flags_dir=toy_flags, published=published)
    out, lines = {}, []
    thread = threading.Thread(
        target=lambda: out.update(
            runner.run_plan(
                plan_, str(root), shard=shard, poll_seconds=poll, echo=lambda *a, **k: lines.append(a[0])
            )
        ),
        daemon=True,
    )
    thread.start()
    return thread, out, lines


def _finish_training(root, name, train_steps):
    run = os.path.join(root, name)
    os.makedirs(run, exist_ok=True)
    with open(os.path.join(run, "flags.json"), "w") as f:
        json.dump({"train_steps": train_steps}, f)
    with open(os.path.join(run, "run_state.json"), "w") as f:
        json.dump({"status": "finished"}, f)


def test_another_hosts_old_failure_is_waited_for_not_blocking(toy_flags, tmp_path, monkeypatch):
    import time

    # Host 1 of 2 runs plan positions 1, 3, 5: toy_bbsource, toy_t1_b+blackbox (needs host 0's
    # toy_t1_b) and toy_t1_broken. toy_t1_b failed in an earlier attempt; host 0 retries it.
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "toy_t1_b.json").write_text(
        json.dumps({"returncode": 1, "error": "old", "t_end": 1.0})
    )
    thread, out, lines = _host(toy_flags, tmp_path, (1, 2), monkeypatch)
    time.sleep(0.5)
    assert thread.is_alive() and "toy_t1_b+blackbox" not in out, lines  # waiting, not blocked
    _finish_training(tmp_path, "toy_t1_b", 40)  # host 0's retry succeeds
    thread.join(timeout=30)
    assert out["toy_t1_b+blackbox"]["returncode"] == 0, lines


def test_a_fresh_failure_on_another_host_blocks_its_dependents_and_says_so(toy_flags, tmp_path, monkeypatch):
    import time

    thread, out, lines = _host(toy_flags, tmp_path, (1, 2), monkeypatch)
    time.sleep(0.3)
    (tmp_path / "logs" / "toy_t1_b.json").write_text(
        json.dumps({"returncode": 3, "error": "error: no data", "t_end": time.time()})
    )
    thread.join(timeout=30)
    assert out["toy_t1_b+blackbox"]["status"] == "blocked", lines
    # The block is on disk, so a host waiting for this job learns it too (no endless wait).
    record = json.loads((tmp_path / "logs" / "toy_t1_b+blackbox.json").read_text())
    assert record["blocked"] and "toy_t1_b" in record["error"]
