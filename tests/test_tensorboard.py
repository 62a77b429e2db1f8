"""TensorBoard logs (issue 15, criterion 2): one event file per run and writer, appended by
resumes; training steps are metrics.csv's epochs; evaluation accuracies and figures at the
step of the model they measured; the settings through the HParams plugin."""

import csv
import glob
import os

import tensorflow as tf
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from tensorboard.util import tensor_util

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
