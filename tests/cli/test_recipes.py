"""Optimisation settings a training run is not given come from the dataset's recipe in the papers
(lrm_tf/data/registry.py RECIPES), lose to explicit values, and flags.json says where every value
came from (issue 14, scope 1)."""

import contextlib
import io
import json
import os

import pytest

from lrm_tf import main
from lrm_tf.cli import flags as cli_flags
from lrm_tf.cli import sources
from lrm_tf.cli.flagfile import read_flagfile
from lrm_tf.config import TrainConfig
from lrm_tf.data.registry import DATASETS, RECIPES

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OPTIMISATION = ("optimizer", "momentum", "lr_values", "lr_boundaries", "lr_warmup", "schedule_unit")
OPTIMISATION += ("weight_decay", "batch_size")


def _parse(*args):
    main.FLAGS.unparse_flags()
    main.parse_flags(["lrm_tf", *args])
    return cli_flags.resolved()


def _run(*args):
    stderr, stdout = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(stdout):
        code = main.run_argv(["lrm_tf", *args])
    return code, [line for line in stderr.getvalue().splitlines() if line.strip()]


@pytest.mark.parametrize("name", sorted(RECIPES))
def test_recipe_is_its_base_flagfile(name):
    """The recipe and flags/base/<name>.cfg (which the table rows include) hold the same values."""
    written = read_flagfile(os.path.join(REPO, "flags", "base", f"{name}.cfg"))
    for setting, value in RECIPES[name].settings.items():
        assert setting in written, f"{name}: {setting} is not in flags/base/{name}.cfg"
        assert _items(written[setting]) == _items(cli_flags.show(value)), setting


def _items(text):
    """Comma-separated values, numbers as numbers ("2e-4" == "0.0002")."""
    try:
        return [float(v) for v in text.split(",") if v]
    except ValueError:
        return text


def test_each_paper_dataset_has_its_recipe_and_digits_none():
    assert {n: i.recipe for n, i in DATASETS.items()} == {
        "mnist": "madry_mnist",
        "cifar10": "lrm_cifar_recipe",
        "cifar100": "lrm_cifar_recipe",
        "svhn_cropped": "lrm_svhn",
        "digits": "",
    }
    mnist = RECIPES["madry_mnist"].settings
    assert (mnist["optimizer"], mnist["lr_values"], mnist["batch_size"], mnist["weight_decay"]) == (
        "adam",
        (1e-4,),
        50,
        0.0,
    )


@pytest.mark.parametrize("dataset", sorted(DATASETS))
def test_absent_settings_come_from_the_recipe(dataset):
    """What the command line trains with equals the library's TrainConfig.for_dataset."""
    resolved = _parse(f"--dataset={dataset}")
    settings = main.validate()
    expected = TrainConfig.for_dataset(dataset)
    for name in OPTIMISATION:
        assert getattr(settings.train, name) == getattr(expected, name), name
    recipe = DATASETS[dataset].recipe
    found = sources.sources()
    for name in OPTIMISATION:
        in_recipe = bool(recipe) and name in RECIPES[recipe].settings
        assert found[name] == (f"recipe: {recipe}" if in_recipe else "default"), name
    if dataset == "mnist":  # before: batch 128, SGD at 0.1/0.01/0.001, weight decay 2e-4
        assert resolved["batch_size"] == 50 and resolved["optimizer"] == "adam"
        assert resolved["lr_values"] == ["0.0001"] and resolved["lr_boundaries"] == []
        assert resolved["weight_decay"] == 0.0
    if dataset == "digits":
        assert settings.train == TrainConfig()


def test_explicit_values_win_over_the_recipe(tmp_path):
    cfg = tmp_path / "mine.cfg"
    cfg.write_text("--weight_decay=0.001\n--optimizer=momentum\n")
    resolved = _parse("--dataset=mnist", f"--flagfile={cfg}", "--batch_size=64", "--optimizer=adam")
    assert (resolved["batch_size"], resolved["weight_decay"], resolved["optimizer"]) == (64, 0.001, "adam")
    assert resolved["lr_values"] == ["0.0001"]  # still the recipe's
    found = sources.sources()
    assert found["batch_size"] == "command line" and found["optimizer"] == "command line"
    assert found["weight_decay"] == f"flagfile: {cfg}"
    assert found["lr_values"] == "recipe: madry_mnist"
    train = main.validate().train
    assert (train.batch_size, train.weight_decay, train.lr_values) == (64, 0.001, (1e-4,))


def test_modes_that_do_not_train_keep_the_defaults():
    resolved = _parse("--dataset=mnist", "--mode=eval")
    assert resolved["batch_size"] == 128 and sources.sources()["batch_size"] == "default"


def test_help_says_where_the_default_comes_from():
    text = main.FLAGS["batch_size"].help
    assert "recipe" in text and "mnist: 50" in text and "cifar10, cifar100, svhn_cropped: 128" in text
    assert "mnist: none" in main.FLAGS["lr_boundaries"].help
    assert "recipe" not in main.FLAGS["seed"].help


def test_flags_json_records_each_value_and_its_source(tmp_path):
    cfg = tmp_path / "row.cfg"
    cfg.write_text("--weight_decay=0.001\n")
    run = tmp_path / "run"
    code, err = _run(
        "--dataset=mnist",
        "--synthetic_data=16",
        f"--flagfile={cfg}",
        "--train_steps=1",
        "--batch_size=8",
        "--eval_examples=4",
        "--eval_batch_size=4",
        "--eval_attacks=clean",
        "--export=false",
        "--verbose=0",
        f"--model_dir={run}",
    )
    assert code == 0, err
    recorded = json.loads((run / "flags.json").read_text())
    found = recorded["_sources"]
    assert set(found) == set(cli_flags.resolved())
    assert recorded["optimizer"] == "adam" and found["optimizer"] == "recipe: madry_mnist"
    assert recorded["batch_size"] == 8 and found["batch_size"] == "command line"
    assert recorded["weight_decay"] == 0.001 and found["weight_decay"] == f"flagfile: {cfg}"
    assert found["eps"] == "dataset: mnist" and found["seed"] == "default"
    provenance = json.loads((run / "provenance.json").read_text())["train"]
    assert provenance["flag_sources"] == found


def test_nested_base_recipe_is_named_as_the_source():
    _parse(f"--flagfile={os.path.join(REPO, 'flags', 'alp_bbsource_mnist.cfg')}")
    found = sources.sources()
    assert found["seed"].startswith("flagfile: ") and found["seed"].endswith("alp_bbsource_mnist.cfg")
    assert found["lr_values"].endswith(os.path.join("base", "madry_mnist.cfg"))
    assert found["momentum"] == "default"  # Adam: the recipe leaves it out


BAD = [
    # The recipe's single rate with a boundary the user gave: the message says where 0.0001 came from.
    (["--dataset=mnist", "--lr_boundaries=5"], "from mnist's recipe madry_mnist"),
    (["--stop_if_not_learning=maybe"], "stop_if_not_learning"),
]


@pytest.mark.parametrize("args,expected", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_input_is_one_line(args, expected, tmp_path):
    code, err = _run(f"--model_dir={tmp_path / 'run'}", *args)
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ") and expected in err[0], err
    assert not (tmp_path / "run").exists()


def test_library_recipe_with_changes():
    assert TrainConfig.for_dataset("mnist", batch_size=64).replace(batch_size=50) == TrainConfig(
        **RECIPES["madry_mnist"].settings
    )
    assert TrainConfig.for_dataset("digits") == TrainConfig()
    with pytest.raises(ValueError, match="unknown dataset"):
        TrainConfig.for_dataset("imagenet")
