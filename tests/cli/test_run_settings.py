"""Modes that read a run take its data and model settings from its flags.json (unless given),
refuse a dataset that does not fit its model in one line, and record their provenance."""

import contextlib
import io
import json

import pytest

from lrm_tf import export, main, models
from lrm_tf.cli import flags as cli_flags
from lrm_tf.report.rundir import write_json_atomic


@pytest.fixture(scope="module")
def cifar_run(tmp_path_factory):
    """A cifar10 run directory (flags.json of a synthetic-data run, model.keras, saved_model/)."""
    net = models.build_model("mnist_cnn", (32, 32, 3), 10, seed=0)
    return _make_run(tmp_path_factory.mktemp("cifar_run"), ["--dataset=cifar10"], net)


def _make_run(path, flags, net):
    """`path` made a run directory of `net`, its flags.json that of a synthetic-data run with `flags`."""
    main.FLAGS.unparse_flags()
    main.parse_flags(["lrm_tf", *flags, "--synthetic_data=8", f"--model_dir={path}"])
    write_json_atomic(str(path / "flags.json"), cli_flags.resolved())
    main.FLAGS.unparse_flags()
    export.save_keras(net, str(path / "model.keras"))
    export.export_saved_model(net, str(path / "saved_model"))
    return path


def _run(*args):
    stderr, stdout = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
        code = main.run_argv(["lrm_tf", *args])
    return code, [l for l in stderr.getvalue().splitlines() if l.strip()], stdout.getvalue()


def test_eval_takes_dataset_and_model_from_the_run(cifar_run, tmp_path):
    out = tmp_path / "eval"
    # before: digits (the default) against a 32x32x3 model: a 60-line traceback, exit 1
    code, err, _ = _run(
        "--mode=eval", f"--load_from={cifar_run}", f"--model_dir={out}", "--eval_attacks=clean"
    )
    assert code == 0, err
    results = json.loads((out / "results.json").read_text())
    assert results["clean"]["examples"] == 4  # the run's synthetic cifar10 test set
    record = json.loads((out / "provenance.json").read_text())["eval"]
    assert record["flags"]["dataset"] == "cifar10" and record["flags"]["synthetic_data"] == 8
    assert record["threat"]["eps"] == pytest.approx(8 / 255)  # cifar10's threat model


@pytest.mark.parametrize("mode", ["eval", "analyze", "audit", "transfer"])
def test_a_dataset_that_does_not_fit_the_run_is_one_line(cifar_run, tmp_path, mode):
    code, err, _ = _run(
        f"--mode={mode}", f"--load_from={cifar_run}", "--dataset=digits", "--eval_attacks=fgsm_xent"
    )
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: --dataset=digits: ") and "cifar10" in err[0] and "32x32x3" in err[0]


def test_a_saved_model_that_does_not_fit_the_dataset_is_one_line(cifar_run, tmp_path):
    code, err, _ = _run(
        "--mode=eval",
        f"--load_from={cifar_run / 'saved_model'}",
        f"--model_dir={tmp_path / 'e'}",
        "--synthetic_data=8",
    )
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: --dataset=digits: the model in ") and "8x8x1 images" in err[0]


def test_transfer_takes_the_run_and_every_mode_records_its_provenance(cifar_run, tmp_path):
    out = tmp_path / "transfer"
    code, err, _ = _run(
        "--mode=transfer",
        f"--load_from={cifar_run}",
        f"--model_dir={out}",
        "--eval_attacks=fgsm_xent",
        "--seed=3",
    )
    assert code == 0, err
    record = json.loads((out / "provenance.json").read_text())["transfer"]
    assert record["seed"] == 3 and record["flags"]["seed"] == 3 and record["flags"]["dataset"] == "cifar10"
    assert set(record["versions"]) >= {"lrm_tf", "tensorflow", "keras"} and all(record["versions"].values())
    assert record["date"][:2] == "20" and record["mode"] == "transfer"


@pytest.fixture(scope="module")
def bf16_run(tmp_path_factory):
    """A run trained with bfloat16 layers (flags.json, model.keras, saved_model/)."""
    net = models.build_model("mnist_cnn", (8, 8, 1), 10, seed=0, mixed_precision="mixed_bfloat16")
    return _make_run(tmp_path_factory.mktemp("bf16_run"), ["--mixed_precision=mixed_bfloat16"], net)


@pytest.mark.parametrize(
    "given,compute",
    [
        ((), "bfloat16"),
        (("--mixed_precision=none",), "float32"),
        (("--mixed_precision=mixed_float16",), "float16"),
    ],
)
def test_a_loaded_run_computes_in_the_precision_given_else_as_trained(
    bf16_run, tmp_path, monkeypatch, given, compute
):
    """Before: --mixed_precision was ignored by eval, so a bfloat16 model could not be
    evaluated in float32 (model.keras keeps its layers' policies)."""
    from lrm_tf.cli import modes

    loaded, real = [], modes._loaded
    monkeypatch.setattr(modes, "_loaded", lambda source, s: loaded.append(real(source, s)) or loaded[-1])
    out = tmp_path / "eval"
    code, err, _ = _run(
        "--mode=eval", f"--load_from={bf16_run}", f"--model_dir={out}", "--eval_attacks=clean", *given
    )
    assert code == 0, err
    assert [layer.compute_dtype for layer in loaded[0].layers if "conv" in layer.name][0] == compute
    record = json.loads((out / "provenance.json").read_text())["eval"]
    assert record["flag_sources"]["mixed_precision"] == ("command line" if given else f"run: {bf16_run}")


def test_a_precision_for_a_saved_model_is_one_line(bf16_run, tmp_path):
    code, err, _ = _run(
        "--mode=eval",
        f"--load_from={bf16_run / 'saved_model'}",
        f"--model_dir={tmp_path / 'e'}",
        "--synthetic_data=8",
        "--mixed_precision=none",
    )
    assert code == 2 and len(err) == 1, err
    assert err[0].startswith("error: --mixed_precision=none: ") and "SavedModel" in err[0]
