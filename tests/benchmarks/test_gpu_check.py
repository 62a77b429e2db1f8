"""benchmarks/gpu_check.py without TensorFlow: its plan, arguments, configurations and table."""

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
import gpu_check  # noqa: E402


def test_gpu_parts_fit_in_eight_minutes_with_their_kill_grace():
    budgets = dict(gpu_check.FULL.budgets)
    worst = sum(budgets.values()) + len(budgets) * gpu_check.KILL_AFTER_S
    assert worst < gpu_check.GPU_LIMIT_S == 480


def test_dry_run_runs_the_same_parts_at_tiny_sizes():
    full, dry = gpu_check.FULL, gpu_check.DRY
    assert [p for p, _ in full.budgets] == [p for p, _ in dry.budgets] == list(gpu_check.PARTS)
    assert dry.batch <= 8 and dry.aa_images <= 16 and dry.aa_attack == gpu_check.MINI_AA
    assert full.batch == 128 and full.aa_images == 1000 and full.aa_attack == "autoattack"
    assert full.model == "resnet_simple"


def test_arguments():
    assert gpu_check.parse_args(["--part", "steps", "--results", "r", "--dry-run"]).sizes is gpu_check.DRY
    assert gpu_check.parse_args(["--table", "--results", "r"]).sizes is gpu_check.FULL
    for bad in (["--part", "steps"], ["--part", "nope", "--results", "r"], ["--plan", "--table"], []):
        with pytest.raises(SystemExit):
            gpu_check.parse_args(bad)


def test_plan_prints_each_part_and_its_limit(capsys):
    assert gpu_check.main(["--plan", "--dry-run"]) == 0
    lines = capsys.readouterr().out.split("\n")
    assert lines[: len(gpu_check.PARTS)] == [f"{p} {s}" for p, s in gpu_check.DRY.budgets]


def test_step_configurations_cover_xla_and_precision_and_put_whole_step_xla_of_attacks_last():
    configs = gpu_check.step_configs()
    assert len(configs) == len(set(configs)) == 3 * (2 + 3 + 3)
    assert ("regular", "attack_xla_step", "none") not in configs
    assert configs[0] == ("regular", "off", "none")
    jit_adversarial = [c for c in configs if c[0] != "regular" and c[1] == "jit_compile"]
    assert configs[-len(jit_adversarial) :] == jit_adversarial


def _write(results, part, rows, status=None):
    with open(os.path.join(results, f"{part}.jsonl"), "w") as f:
        f.writelines(json.dumps(gpu_check.row(*r)) + "\n" for r in rows)
    if status is not None:
        with open(os.path.join(results, f"{part}.status"), "w") as f:
            f.write(status + "\n")


def test_table_says_how_each_part_ended_and_keeps_what_finished(tmp_path):
    results = str(tmp_path)
    _write(results, "env", [("TensorFlow", "2.21.0", None, "", "a | b")], "0 5")
    _write(results, "gpu_tests", [], "1 30")
    step_rows = [
        ("step pgd7", "xla=off, none", 100.0, "ms", ""),
        ("step pgd7", "xla=attack_xla_step, none", 80.0, "ms", ""),
        ("step pgd7", "xla=jit_compile, none", None, "", "ERROR: XLA cannot compile Fingerprint"),
    ]
    _write(results, "steps", step_rows, "124 200")
    with open(os.path.join(results, "steps.jsonl"), "a") as f:
        f.write('{"name": "step lrm", "sett')  # cut short by the kill
    _write(results, "draws", [], "137 40")
    text = gpu_check.table(results, gpu_check.FULL, dry_run=False)
    body = [line for line in text.split("\n") if line.startswith("| ") and "---" not in line][1:]
    assert all(line.count(" | ") == 4 for line in body), body  # five cells; a '|' in a note is replaced
    assert "| part env | limit 30 s | 5 | s | finished |" in body
    assert "| part gpu_tests | limit 60 s | 30 | s | FAILED (exit status 1): see gpu_tests.log |" in body
    timed_out = [line for line in body if "TIMED OUT" in line]
    assert [line.split(" | ")[0] for line in timed_out] == ["| part steps", "| part draws"]
    assert "| part autoattack | limit 110 s |  |  | not run |" in body
    assert "| fastest pgd7 | xla=attack_xla_step, none | 80 | ms | 1.25x faster than xla=off, none |" in body
    assert body[-1].startswith("| total |  | 275 | s |")
    assert body.index("| step pgd7 | xla=off, none | 100 | ms |  |") < body.index(timed_out[0])


def test_errors_name_the_ops_xla_cannot_compile():
    message = (
        "Graph execution error: Detected unsupported operations when trying to compile graph "
        "f on XLA_GPU_JIT: Fingerprint (No registered 'Fingerprint' OpKernel for XLA_GPU_JIT "
        "devices compatible with node {{node Fingerprint}})"
    )
    assert gpu_check._error(ValueError(message)) == "ERROR: XLA cannot compile Fingerprint (no XLA kernel)"
    assert gpu_check._error(ValueError("boom\n  here")) == "ERROR ValueError: boom here"
