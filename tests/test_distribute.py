"""Distributed training equals one-device training (SPEC 5: strategies chosen by flag).

* MultiWorkerMirroredStrategy: two worker processes on 127.0.0.1 (TF_CONFIG per process,
  free ports) train M-PGD for a few steps with lrm_tf.training.train, stop, resume from the
  chief's checkpoints, and end with the same weights on both workers and the same weights as
  one process on the same global batch. Only the chief writes the run directory.
* MirroredStrategy over two logical CPUs: a whole `--mode=train` run of ALP through
  lrm_tf.main gives the results.json and weights of the one-device run.

Every training here is a subprocess: logical devices and collective ops must be configured
before TensorFlow initialises.
"""

import json
import os
import socket
import subprocess
import sys

import numpy as np
import pytest
from run_utils import REPO

SCRIPT = os.path.join(REPO, "tests", "multiworker_script.py")
TIMEOUT = 300


def _free_ports(n):
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _env(tf_config=None, tmpdir=None):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": REPO}
    env.pop("TF_CONFIG", None)
    if tf_config is not None:
        env["TF_CONFIG"] = json.dumps(tf_config)
    if tmpdir is not None:
        env["TMPDIR"] = str(tmpdir)  # where a non-chief worker puts its scratch checkpoints
    return env


def _start(run_dir, weights, steps, tf_config=None, tmpdir=None):
    return subprocess.Popen(
        [sys.executable, SCRIPT, str(run_dir), str(weights), str(steps)],
        cwd=REPO,
        env=_env(tf_config, tmpdir),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _finish(procs):
    """Waits for every process; on a failure or a hang, stops the others (a lone worker would
    wait forever in its collectives) and reports every output."""
    outputs, failed = [], False
    for p in procs:
        try:
            out, _ = p.communicate(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate()
            failed = True
        outputs.append(out)
        if p.returncode != 0:
            failed = True
            for q in procs:
                if q.poll() is None:
                    q.kill()
    if failed:
        raise AssertionError(
            "\n\n".join(
                f"--- process {i} (exit {p.returncode}):\n{o[-3000:]}"
                for i, (p, o) in enumerate(zip(procs, outputs))
            )
        )
    return outputs


def _workers(run_dir, tmp_path, steps, tag):
    ports = _free_ports(2)
    cluster = {"worker": [f"127.0.0.1:{p}" for p in ports]}
    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    return [
        _start(
            run_dir,
            tmp_path / f"{tag}_w{i}.npz",
            steps,
            {"cluster": cluster, "task": {"type": "worker", "index": i}},
            scratch,
        )
        for i in range(2)
    ]


def _weights(path, prefix="final_"):
    z = np.load(path)
    keys = sorted((k for k in z.files if k.startswith(prefix)), key=lambda k: int(k.split("_")[1]))
    return [z[k] for k in keys]


def _max_diff(a, b):
    assert len(a) == len(b)
    return max(float(np.abs(p - q).max()) for p, q in zip(a, b))


def test_multiworker_matches_single_process_and_resumes(tmp_path):
    run_dir, single_dir = tmp_path / "run", tmp_path / "single"
    # Two workers (3 steps, then resumed to 5) alongside one process with the global batch.
    single = _start(single_dir, tmp_path / "single.npz", 5)
    _finish(_workers(run_dir, tmp_path, 3, "first"))
    # Only the chief wrote the run directory; the other worker's scratch folder is gone.
    assert sorted(os.listdir(run_dir)) == ["README.md", "checkpoints", "metrics.csv", "tensorboard"]
    assert os.path.exists(run_dir / "checkpoints" / "ckpt-3.index")
    assert os.listdir(tmp_path / "scratch") == []
    w0, w1 = _weights(tmp_path / "first_w0.npz"), _weights(tmp_path / "first_w1.npz")
    assert _max_diff(w0, w1) == 0.0
    assert _max_diff(w0, _weights(tmp_path / "first_w0.npz", "initial_")) > 1e-3  # it trained

    outputs = _finish(_workers(run_dir, tmp_path, 5, "resumed"))
    for out in outputs:  # every worker restored the chief's checkpoint, not only the chief
        assert "resuming from" in out and "at step 3 of 5" in out, out[-2000:]
    assert ['"chief": true', '"chief": false'] == [
        '"chief": true' if '"chief": true' in out else '"chief": false' for out in outputs
    ]
    (single_out,) = _finish([single])
    assert '"replicas": 1' in single_out
    w0, w1 = _weights(tmp_path / "resumed_w0.npz"), _weights(tmp_path / "resumed_w1.npz")
    ws = _weights(tmp_path / "single.npz")
    assert _max_diff(w0, w1) == 0.0
    assert _max_diff(w0, ws) < 1e-5
    assert os.path.exists(run_dir / "checkpoints" / "ckpt-5.index")
    # metrics.csv of the resumed run: one row for the (partial) epoch, from the chief only.
    chief_rows = (run_dir / "metrics.csv").read_text().strip().splitlines()
    single_rows = (single_dir / "metrics.csv").read_text().strip().splitlines()
    assert chief_rows[0] == single_rows[0]
    chief_last = dict(zip(chief_rows[0].split(","), chief_rows[-1].split(",")))
    single_last = dict(zip(single_rows[0].split(","), single_rows[-1].split(",")))
    for name in ("step", "loss", "ce_adv", "ce_clean", "accuracy"):
        assert float(chief_last[name]) == pytest.approx(float(single_last[name]), rel=1e-4), name


def _load_keras_weights(path):
    import keras

    import lrm_tf.models  # noqa: F401  (registers the custom layers)

    return [np.asarray(w) for w in keras.saving.load_model(path, compile=False).get_weights()]


def test_mirrored_alp_run_matches_one_device(tmp_path):
    common = [
        "--mode=train",
        "--dataset=digits",
        "--model=mnist_cnn",
        "--train_steps=3",
        "--batch_size=32",
        "--lr_values=0.05",
        "--lr_boundaries=",
        "--seed=1",
        "--adv_train=pgd3_xent",
        "--alp_weight=0.5",
        "--eval_attacks=clean,pgd3_xent",
        "--eval_examples=64",
        "--eval_batch_size=32",
        "--verbose=0",
    ]
    one, two = tmp_path / "one", tmp_path / "two"
    env = _env()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "lrm_tf.main", *common, f"--model_dir={d}", *extra],
            cwd=REPO,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for d, extra in ((one, []), (two, ["--strategy=mirrored", "--cpu_replicas=2"]))
    ]
    _finish(procs)
    r1 = json.loads((one / "results.json").read_text())
    r2 = json.loads((two / "results.json").read_text())
    # (plus the per-example worst case over them, a row every evaluation writes since issue 13)
    assert set(r1) == set(r2) == {"clean", "pgd3_xent", "worst_case"}
    for name in r1:
        assert r1[name]["examples"] == r2[name]["examples"] == 64
        assert r1[name]["params"] == r2[name]["params"]
        assert r1[name]["accuracy"] == pytest.approx(r2[name]["accuracy"], abs=1e-9), name
    assert (
        _max_diff(
            _load_keras_weights(str(one / "model.keras")), _load_keras_weights(str(two / "model.keras"))
        )
        < 1e-5
    )
    m1 = (one / "metrics.csv").read_text().splitlines()
    m2 = (two / "metrics.csv").read_text().splitlines()
    row1, row2 = (dict(zip(m[0].split(","), m[-1].split(","))) for m in (m1, m2))
    for name in ("loss", "ce_adv", "ce_clean", "pairing", "accuracy"):
        assert float(row1[name]) == pytest.approx(float(row2[name]), rel=1e-4, abs=1e-6), name
