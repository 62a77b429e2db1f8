"""TensorBoard logs (issue 15, criterion 2): one event file per run and writer, appended by
resumes; training steps are metrics.csv's epochs; evaluation accuracies and figures at the
step of the model they measured; the settings through the HParams plugin."""

import csv
import glob
import json
import os

import numpy as np
import pytest
import tensorflow as tf
from run_utils import run_main
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

from lrm_tf import data, models, training
from lrm_tf.config import Objective
from lrm_tf.eval import evaluation
from lrm_tf.report import tensorboard
from lrm_tf.report.rundir import RunDir


def read_events(logdir: str) -> tuple[dict, list]:
    """({tag: [(step, value)]} of the scalars, [(tag, step)] of the other summaries) of the
    single event file in `logdir`, read with TensorFlow's own record reader."""
    files = glob.glob(os.path.join(logdir, "*tfevents*"))
    assert len(files) == 1, files
    scalars, others = {}, []
    for event in tf.compat.v1.train.summary_iterator(files[0]):
        for value in event.summary.value:
            plugin = value.metadata.plugin_data.plugin_name
            if plugin == "scalars":
                scalars.setdefault(value.tag, []).append(
                    (event.step, float(tensor_util.make_ndarray(value.tensor)))
                )
            else:
                others.append((value.tag, event.step, plugin))
    return scalars, others


def csv_rows(run: RunDir) -> list[dict]:
    with open(run.metrics_csv) as f:
        return list(csv.DictReader(f))


def test_a_cut_record_is_dropped_before_appending(tmp_path):
    logdir = str(tmp_path)
    path = tensorboard.write_scalars(logdir, 1, {"a": 1.0})
    with open(path, "ab") as f:
        f.write(b"\x40\x00\x00\x00\x00\x00\x00\x00\x01\x02")  # a crash inside the next header
    tensorboard.write_scalars(logdir, 2, {"a": 2.0, "text": "skipped", "nan": float("nan")})
    scalars, _ = read_events(logdir)
    assert scalars == {"a": [(1, 1.0), (2, 2.0)]}


def test_training_and_evaluation_logs_follow_metrics_csv(tmp_path):
    """3 epochs, then a resume to 4: one file per writer, steps 1..4 as metrics.csv, the
    learning rate once; results at the model's epoch; the settings as HParams once."""
    arrays = data.load_arrays("digits")
    cfg = training.TrainConfig(batch_size=64, train_epochs=3, lr_values=(0.05,), lr_boundaries=(), verbose=0)
    run = RunDir(str(tmp_path / "run"))
    build = lambda: models.build_model("mnist_cnn", (8, 8, 1), 10, seed=0)
    training.train(build, Objective(), arrays, run, cfg)
    net = training.train(build, Objective(), arrays, run, cfg.replace(train_epochs=4))
    rows = csv_rows(run)
    scalars, _ = read_events(os.path.join(run.tensorboard, "train"))
    columns = set(rows[0]) - {"epoch", "step"}
    assert set(scalars) == columns and "lr" in columns
    assert not {"epoch_lr", "epoch_learning_rate", "learning_rate"} & set(scalars)
    for name in columns:
        assert [s for s, _ in scalars[name]] == [int(r["epoch"]) for r in rows] == [1, 2, 3, 4]
        np.testing.assert_allclose([v for _, v in scalars[name]], [float(r[name]) for r in rows], rtol=1e-6)
    _, root = read_events(run.tensorboard)
    assert [plugin for _, _, plugin in root] == ["hparams"]  # written once, not again on resume

    x = data.to_float(arrays.x_test[:40]).numpy()
    threat = evaluation.Threat(eps=0.3, eps_step=0.1)
    attacks = ["clean", "fgsm_xent"]
    results = evaluation.evaluate_attacks(net, x, arrays.y_test[:40], attacks, threat, log=print)
    evaluation.write_results(run, results, "test")
    scalars, _ = read_events(os.path.join(run.tensorboard, "eval"))
    assert set(scalars) == {"accuracy/clean", "accuracy/fgsm_xent", "accuracy/worst_case"}
    for name in ("clean", "fgsm_xent", "worst_case"):
        assert scalars[f"accuracy/{name}"] == [(4, pytest.approx(results[name]["accuracy"]))]


def test_tensorboard_reads_scalars_images_and_hparams(tmp_path):
    """TensorBoard's own loader parses the three plugins' summaries."""
    from lrm_tf.report.plotting import pyplot, save_figure

    tb = tmp_path / "tensorboard"
    tensorboard.write_hparams(str(tb), {"lr_values": [0.1, 0.01], "model": "resnet8", "eps": 0.03, "_x": 1})
    fig = pyplot().figure(figsize=(2, 1))
    save_figure(fig, str(tmp_path / "f.png"))
    tensorboard.write_figure(str(tmp_path), "analysis_logits", str(tmp_path / "f.png"), "a caption")
    acc = EventAccumulator(str(tb / "eval"), size_guidance={"tensors": 0})
    acc.Reload()
    (event,) = acc.Tensors("analysis_logits")
    width, height, png = tensor_util.make_ndarray(event.tensor_proto)
    assert png.startswith(b"\x89PNG") and int(width) > 0 and int(height) > 0
    acc = EventAccumulator(str(tb))
    acc.Reload()
    content = acc.PluginTagToContent("hparams")
    from tensorboard.plugins.hparams import metadata

    start = metadata.parse_session_start_info_plugin_data(content["_hparams_/session_start_info"])
    assert start.hparams["lr_values"].string_value == "0.1,0.01" and start.hparams["eps"].number_value == 0.03
    assert "_x" not in start.hparams


def test_a_three_epoch_run_leaves_one_event_file_per_writer(tmp_path):
    """Criterion 2 through the command line: train 3 epochs, evaluate, read the event files."""
    run = tmp_path / "run"
    attacks = ["clean", "fgsm_xent", "pgd20_xent"]
    run_main(
        "--flagfile=flags/quickstart.cfg",
        f"--model_dir={run}",
        "--train_epochs=3",
        f"--eval_attacks={','.join(attacks)}",
        "--export=false",
    )
    events = glob.glob(str(run / "tensorboard" / "**" / "*tfevents*"), recursive=True)
    folders = sorted(os.path.relpath(os.path.dirname(p), run) for p in events)
    assert folders == ["tensorboard", "tensorboard/eval", "tensorboard/train"]  # one file each
    rows = csv_rows(RunDir(str(run)))
    train, _ = read_events(str(run / "tensorboard" / "train"))
    assert [step for step, _ in train["loss"]] == [int(r["epoch"]) for r in rows] == [1, 2, 3]
    evaluated, _ = read_events(str(run / "tensorboard" / "eval"))
    results = json.loads((run / "results.json").read_text())
    assert set(evaluated) == {f"accuracy/{a}" for a in [*attacks, "worst_case"]}
    for name, points in evaluated.items():
        assert points == [(3, pytest.approx(results[name.split("/")[1]]["accuracy"]))]
    assert tensorboard.command(str(run)) in (run / "README.md").read_text()
