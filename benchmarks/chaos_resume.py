"""Chaos test of resuming (issue 16, criterion 2): SIGKILL one short digits run at random
instants, each kill followed by the same command, and check that it ends identical to an
uninterrupted run.

An uninterrupted run is timed first (D seconds, start-up included). Then the same command is
started in a fresh --model_dir and killed after a delay drawn uniformly from [0, D]; the same
command is run again, killed again after a new draw, and so on. A run that ends before its
kill closes the chain; the next kill starts a new chain in a new folder. After --kills kills
the last chain is run to the end. Every chain must end with metrics.csv (the 'seconds'
column aside), results.json (timings aside), the checkpoint's tensors and model.keras's
weights identical to the uninterrupted run. After each kill the run directory must describe
one state: metrics.csv holds no row beyond the last committed checkpoint, saved_model/ and
model.keras are complete or absent, results.json (if present) equals the uninterrupted one.

    python benchmarks/chaos_resume.py --kills 20 --seed 0 --out /tmp/chaos

Prints one line per kill and a summary; exits 1 if any chain differs or any state was wrong.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
import zipfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# Six 44-step epochs with a checkpoint every 5 steps, random terms on (noise, label smoothing).
COMMAND = (
    "--dataset=digits --model=mnist_cnn --batch_size=32 --optimizer=momentum --lr_values=0.02 "
    "--lr_boundaries= --weight_decay=1e-4 --eval_attacks=clean,fgsm_xent --verbose=2 --deterministic "
    "--train_epochs=6 --checkpoint_every_steps=5 --seed=4 --noise_sigma=0.1 --label_smoothing=0.1"
).split()


def start(model_dir: str) -> subprocess.Popen:
    """The command, its output appended to <model_dir>.log."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("LRM_TF_KILL_AT", None)
    with open(model_dir + ".log", "a") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "lrm_tf.main", *COMMAND, f"--model_dir={model_dir}"],
            cwd=REPO,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


def log_tail(model_dir: str) -> str:
    with open(model_dir + ".log") as f:
        return f.read()[-3000:]


def _tf():
    """TensorFlow, imported with its native start-up lines silenced (this process reads
    checkpoints and model.keras)."""
    if "tensorflow" not in sys.modules:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        saved = os.dup(2)
        with open(os.devnull, "w") as devnull:
            os.dup2(devnull.fileno(), 2)
            try:
                import tensorflow

                tensorflow.config.list_logical_devices()  # device start-up lines too
            finally:
                os.dup2(saved, 2)
                os.close(saved)
    return sys.modules["tensorflow"]


def committed_step(model_dir: str) -> int:
    tf = _tf()
    latest = tf.train.latest_checkpoint(os.path.join(model_dir, "checkpoints"))
    return int(latest.rsplit("-", 1)[1]) if latest else 0


def metrics_rows(model_dir: str) -> list[dict]:
    path = os.path.join(model_dir, "metrics.csv")
    if not os.path.exists(path):
        return []
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def results(model_dir: str):
    def strip(v):
        return {k: strip(x) for k, x in v.items() if k != "seconds"} if isinstance(v, dict) else v

    with open(os.path.join(model_dir, "results.json")) as f:
        return strip(json.load(f))


def weights(model_dir: str) -> dict:
    """The checkpoint's tensors (weights and optimizer state) and model.keras's weights."""
    tf = _tf()

    from lrm_tf.export import load_keras

    reader = tf.train.load_checkpoint(os.path.join(model_dir, "checkpoints"))
    skip = ("_CHECKPOINTABLE_OBJECT_GRAPH", "save_counter/.ATTRIBUTES/VARIABLE_VALUE")
    out = {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map() if k not in skip}
    for i, w in enumerate(load_keras(os.path.join(model_dir, "model.keras")).get_weights()):
        out[f"model.keras/{i}"] = w
    return out


def state_problems(model_dir: str, reference: str) -> list[str]:
    """What is wrong with the state a kill left (empty: one consistent state)."""
    problems = []
    step = committed_step(model_dir)
    expected = [r for r in metrics_rows(reference) if int(r["step"]) <= step]
    lagging = expected[:-1] if expected and expected[-1]["step"] == str(step) else expected
    if metrics_rows(model_dir) not in (expected, lagging):
        problems.append(f"metrics.csv does not match the checkpoint at step {step}")
    saved = os.path.join(model_dir, "saved_model")
    if os.path.exists(saved) and not os.path.isfile(os.path.join(saved, "variables", "variables.index")):
        problems.append("partial saved_model/")
    keras_file = os.path.join(model_dir, "model.keras")
    if os.path.exists(keras_file):
        try:
            with zipfile.ZipFile(keras_file) as z:
                if z.testzip() is not None:
                    problems.append("corrupt model.keras")
        except zipfile.BadZipFile:
            problems.append("partial model.keras")
    if os.path.exists(os.path.join(model_dir, "results.json")) and results(model_dir) != results(reference):
        problems.append("results.json differs")
    return problems


def differences(model_dir: str, reference: str) -> list[str]:
    """How a finished chain differs from the uninterrupted run (empty: identical)."""
    import numpy as np

    diffs = []
    if metrics_rows(model_dir) != metrics_rows(reference):
        diffs.append("metrics.csv")
    if results(model_dir) != results(reference):
        diffs.append("results.json")
    a, b = weights(reference), weights(model_dir)
    if a.keys() != b.keys() or any(not np.array_equal(a[k], b[k]) for k in a):
        diffs.append("weights")
    return diffs


def phase(model_dir: str) -> str:
    """Where the run was when killed, from what is on disk."""
    state = {}
    if os.path.exists(os.path.join(model_dir, "run_state.json")):
        with open(os.path.join(model_dir, "run_state.json")) as f:
            state = json.load(f)
    if state.get("status") == "finished":
        return "finished"
    if os.path.exists(os.path.join(model_dir, "results.json")):
        return "results written"
    if os.path.exists(os.path.join(model_dir, "model.keras")):
        return "exported"
    step = committed_step(model_dir) if os.path.isdir(os.path.join(model_dir, "checkpoints")) else 0
    return f"checkpoint step {step}" if step else ("flags written" if state else "start-up")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="/tmp/lrm_tf_chaos")
    args = parser.parse_args()
    rng = random.Random(args.seed)
    shutil.rmtree(args.out, ignore_errors=True)
    os.makedirs(args.out)
    reference = os.path.join(args.out, "uninterrupted")
    t0 = time.time()
    proc = start(reference)
    if proc.wait() != 0:
        sys.exit(f"the uninterrupted run failed:\n{log_tail(reference)}")
    duration = time.time() - t0
    print(f"uninterrupted run: {duration:.1f} s; kills drawn from [0, {duration:.1f}] s", flush=True)
    kills, chains, bad = 0, [], []
    while kills < args.kills or (chains and chains[-1]["open"]):
        if not chains or not chains[-1]["open"]:
            chains.append({"dir": os.path.join(args.out, f"chain{len(chains)}"), "kills": 0, "open": True})
        chain = chains[-1]
        proc = start(chain["dir"])
        delay = rng.uniform(0, duration) if kills < args.kills else None
        try:
            rc = proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            rc = None
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            chain["kills"] += 1
            problems = state_problems(chain["dir"], reference)
            bad += problems
            print(
                f"kill {kills:2d}: chain {len(chains) - 1}, after {delay:5.1f} s, at: {phase(chain['dir'])}"
                + (f"; WRONG STATE: {', '.join(problems)}" if problems else ""),
                flush=True,
            )
            if phase(chain["dir"]) != "finished":
                continue  # else killed while exiting: the same command would refuse a finished run
        if rc not in (None, 0):
            sys.exit(f"chain {len(chains) - 1} exited {rc}:\n{log_tail(chain['dir'])}")
        chain["open"] = False
        chain["diffs"] = differences(chain["dir"], reference)
        bad += [f"chain {len(chains) - 1}: {d} differs" for d in chain["diffs"]]
        print(
            f"chain {len(chains) - 1} finished after {chain['kills']} kills: "
            + ("identical to the uninterrupted run" if not chain["diffs"] else f"DIFFERS: {chain['diffs']}"),
            flush=True,
        )
    print(
        f"\n{kills} kills over {len(chains)} chains in {time.time() - t0:.0f} s; "
        + ("every chain ended identical, every killed state consistent" if not bad else f"FAILED: {bad}")
    )
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
