import json
import os
import stat

import pytest

from lrm_tf.report.rundir import RunDir, write_json_atomic, write_text_atomic


def test_interrupted_write_leaves_previous_results_intact(tmp_path):
    path = tmp_path / "results.json"
    write_json_atomic(str(path), {"clean": {"accuracy": 0.9}})

    class Unserializable:
        pass

    # json.dumps fails half-way through the object: the old file must survive unchanged,
    # and no temporary file may be left beside it.
    with pytest.raises(TypeError):
        write_json_atomic(str(path), {"clean": {"accuracy": 0.5}, "pgd": Unserializable()})
    assert json.loads(path.read_text()) == {"clean": {"accuracy": 0.9}}
    assert os.listdir(tmp_path) == ["results.json"]


def test_run_state_and_writability(tmp_path):
    run = RunDir(str(tmp_path / "run"))
    assert not run.exists() and not run.is_finished()
    run.check_writable()
    run.set_state("finished", train_seconds=1.0)
    assert run.is_finished()
    assert os.listdir(run.path) == ["run_state.json"]


def test_checkpoint_means_a_committed_one_and_remove_is_whole(tmp_path, monkeypatch):
    """has_checkpoint needs the state file (a kill mid-save leaves only ckpt-N files); remove()
    renames the run aside first, so a kill while deleting never leaves part of it in place."""
    run = RunDir(str(tmp_path / "run"))
    os.makedirs(run.checkpoints)
    for name in ("ckpt-7.metrics.json", "ckpt-7.index", "ckpt-7.data-00000-of-00001"):
        open(os.path.join(run.checkpoints, name), "w").close()
    assert not run.has_checkpoint()
    open(os.path.join(run.checkpoints, "checkpoint"), "w").close()
    assert run.has_checkpoint()
    run.set_state("finished")

    def killed(path):
        raise KeyboardInterrupt  # stands for a kill half-way through the deletion

    monkeypatch.setattr("shutil.rmtree", killed)
    with pytest.raises(KeyboardInterrupt):
        run.remove()
    assert not run.exists()
    (aside,) = os.listdir(tmp_path)
    assert aside.startswith(".run.removing.")
    monkeypatch.undo()
    run.remove()  # nothing there: no error


def test_crash_before_rename_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "results.md"
    path.write_text("old table\n")
    import lrm_tf.report.rundir as rundir

    def crash(src, dst):
        raise KeyboardInterrupt  # the process is interrupted between write and rename

    monkeypatch.setattr(rundir.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        rundir.write_text_atomic(str(path), "new table\n" * 1000)
    assert path.read_text() == "old table\n"
    assert os.listdir(tmp_path) == ["results.md"]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_result_files_follow_the_umask(tmp_path, umask):
    old = os.umask(umask)
    try:
        write_json_atomic(str(tmp_path / "results.json"), {"clean": 1.0})
        write_text_atomic(str(tmp_path / "results.md"), "| a |\n")
        plain = tmp_path / "plain.txt"
        plain.write_text("x")  # any other file of the run
    finally:
        os.umask(old)
    for name in ("results.json", "results.md"):
        # before: 0600 (mkstemp) whatever the umask
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == 0o666 & ~umask, name
        assert stat.S_IMODE(os.stat(tmp_path / name).st_mode) == stat.S_IMODE(os.stat(plain).st_mode)
    assert sorted(os.listdir(tmp_path)) == ["plain.txt", "results.json", "results.md"]


@pytest.mark.parametrize("path", ["gs://bucket/run", "s3://bucket/run", "hdfs://namenode/run"])
def test_cloud_run_directory_is_refused_in_one_line(tmp_path, monkeypatch, path):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError) as info:
        RunDir(path).create()  # before: made ./gs:/bucket/run
    assert len(str(info.value).splitlines()) == 1 and path in str(info.value)
    with pytest.raises(ValueError):
        write_json_atomic(f"{path}/results.json", {})
    assert os.listdir(tmp_path) == []
