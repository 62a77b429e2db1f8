"""The entry point as a user meets it: flagfiles, clear one-line errors, a finished run directory."""

import json

from run_utils import run_main


def _one_line_error(proc):
    lines = [l for l in proc.stderr.strip().splitlines() if l.strip()]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    return lines[0]


def test_missing_dataset_offline_is_one_line(tmp_path):
    model_dir = tmp_path / "run"
    proc = run_main(
        "--dataset=cifar100",
        "--model=resnet8",
        f"--model_dir={model_dir}",
        check=False,
        env={"TFDS_DATA_DIR": str(tmp_path / "tfds")},
    )
    assert proc.returncode != 0
    line = _one_line_error(proc)
    assert "--local_data" in line and "--data_dir" in line
    assert not model_dir.exists()


def test_unknown_flag_exits_2(tmp_path):
    proc = run_main("--modle=resnet8", check=False)
    assert proc.returncode == 2
    assert "modle" in _one_line_error(proc)


def test_quickstart_flagfile_trains_evaluates_exports(tmp_path):
    model_dir = tmp_path / "quick"
    proc = run_main("--flagfile=flags/quickstart.cfg", f"--model_dir={model_dir}", "--train_epochs=2")
    assert "clean" in proc.stdout
    for name in (
        "flags.json",
        "metrics.csv",
        "results.json",
        "results.md",
        "model.keras",
        "saved_model/saved_model.pb",
        "run_state.json",
    ):
        assert (model_dir / name).exists(), name
    results = json.loads((model_dir / "results.json").read_text())
    assert results["clean"]["examples"] == 360 and results["clean"]["accuracy"] > 0.5
    assert json.loads((model_dir / "flags.json").read_text())["dataset"] == "digits"
    record = json.loads((model_dir / "provenance.json").read_text())["train"]  # before: no such file
    assert record["flags"]["train_epochs"] == 2 and record["seed"] == 0 and record["versions"]["tensorflow"]
    # A finished run is not silently overwritten.
    again = run_main(
        "--flagfile=flags/quickstart.cfg", f"--model_dir={model_dir}", "--overwrite=false", check=False
    )
    assert again.returncode == 2 and "--overwrite" in _one_line_error(again)
