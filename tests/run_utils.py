"""Helpers shared by the tests (a plain module: conftest names clash across test folders)."""

import os
import subprocess
import sys

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def shared_data(sub: str) -> str:
    root = os.environ.get("LRM_TF_DATA", "")
    path = os.path.join(root, sub) if root else ""
    if not root or not os.path.isdir(path):
        msg = (
            f"real data {sub!r} not found: set LRM_TF_DATA to the shared data folder "
            f"(../shared/data), currently {root!r}"
        )
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return path


def run_main(*args, timeout=600, check=True, env=None):
    """Runs `python -m lrm_tf.main` in a fresh process; returns the CompletedProcess."""
    full_env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", **(env or {})}
    proc = subprocess.run(
        [sys.executable, "-m", "lrm_tf.main", *args],
        cwd=REPO,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"lrm_tf.main {' '.join(args)} exited {proc.returncode}:\n"
            f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def run_main_to_file(log, *args, timeout=600):
    """Runs `python -m lrm_tf.main` with stdout and stderr redirected to the file `log` (a
    path); returns (exit status, the log's bytes)."""
    with open(log, "w") as out:
        proc = subprocess.run(
            [sys.executable, "-m", "lrm_tf.main", *args],
            cwd=REPO,
            env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"},
            stdout=out,
            stderr=subprocess.STDOUT,
            timeout=timeout,
        )
    with open(log, "rb") as f:
        return proc.returncode, f.read()
