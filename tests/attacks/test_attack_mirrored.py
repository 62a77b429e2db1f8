"""MirroredStrategy with two logical CPU devices gives the single-device adversarial examples.

The logical devices must exist before TensorFlow initialises, so the check runs in a fresh
Python process (mirrored_attack_script.py) that prints its measurements as JSON.
"""

import json
import os
import subprocess
import sys

SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "mirrored_attack_script.py")
# Replicas see batches of 4 and 3 instead of 7; conv kernels may round differently per batch
# size, which moves the Adam steps of SPSA and the L2 normalisation by a few ulps.
TOLERANCE = 1e-5


def test_mirrored_strategy_matches_single_device():
    result = subprocess.run(
        [sys.executable, SCRIPT],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report.pop("replicas") == 2
    names = [k for k in report if not k.endswith("/moved")]
    assert len(names) >= 8
    for name in names:
        assert report[name] <= TOLERANCE, (name, report[name])
        if name != "clean":
            assert report[name + "/moved"] > 0.01, name  # the attack did something
