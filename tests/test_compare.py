"""Our numbers next to the published ones (lrm_tf.report.compare) on run directories written here."""

import json

import pytest

from lrm_tf.report import compare
from lrm_tf.report.published import PUBLISHED


def _run(path, flags, results):
    path.mkdir(parents=True)
    if flags is not None:
        (path / "flags.json").write_text(json.dumps(flags))
    if results is not None:
        (path / "results.json").write_text(
            json.dumps({k: {"accuracy": v, "examples": 10000, "params": {}} for k, v in results.items()})
        )
    return str(path)


@pytest.fixture
def two_runs(tmp_path):
    # Matched through the recorded --model_dir although the directory has another name.
    lrm = _run(
        tmp_path / "copied_somewhere",
        {"model_dir": "runs/lrm_t1_cifar10_lrm", "dataset": "cifar10"},
        {
            "clean": 0.7,
            "fgsm_xent": 0.5,
            "pgd5_xent": 0.5,
            "pgd10_xent": 0.5,
            "pgd20_xent": 0.4861,
            "pgd40_xent": 0.45,
        },
    )
    # No flags.json: matched by the directory name, with a suffix after the stem.
    madry = _run(tmp_path / "shafahi_t2_mnist_madry_adv_seed3", None, {"clean": 0.988, "pgd40_xent": 0.95})
    return lrm, madry


def _by(rows, run, attack):
    [row] = [r for r in rows if r["run"] == run and r["attack"] == attack]
    return row


def test_ours_published_delta(two_runs):
    lrm, madry = two_runs
    rows = compare.compare_runs([lrm, madry])
    r = _by(rows, lrm, "clean")
    assert r["stem"] == "lrm_t1_cifar10_lrm" and r["paper"] == "lrm" and r["table"] == "1"
    assert r["ours"] == pytest.approx(70.0) and r["published"] == 68.5 and r["delta"] == pytest.approx(1.5)
    assert r["examples"] == 10000
    r = _by(rows, lrm, "pgd20_xent")
    assert r["ours"] == pytest.approx(48.61) and r["published"] == 51.0 and r["delta"] == pytest.approx(-2.39)
    # An attack the paper does not report: ours only.
    r = _by(rows, lrm, "pgd40_xent")
    assert r["ours"] == pytest.approx(45.0) and r["published"] is None and r["delta"] is None
    # The published columns come first, in the paper's order.
    assert [r["attack"] for r in rows if r["run"] == lrm] == [
        *PUBLISHED["lrm_t1_cifar10_lrm"]["results"],
        "pgd40_xent",
    ]
    r = _by(rows, madry, "pgd40_xent")
    assert r["stem"] == "shafahi_t2_mnist_madry_adv"
    assert r["ours"] == pytest.approx(95.0) and r["published"] == 93.2 and r["delta"] == pytest.approx(1.8)
    # Published but not evaluated (here: white-box FGSM and a black-box column): published only.
    r = _by(rows, madry, "fgsm_cw")
    assert r["ours"] is None and r["published"] == 95.41 and r["delta"] is None
    assert _by(rows, madry, "blackbox:madry_copy:pgd")["published"] == 96.81


def test_markdown_side_by_side(two_runs):
    lrm, madry = two_runs
    md = compare.compare_markdown(compare.compare_runs([lrm, madry]))
    header = md.splitlines()[0]
    assert header.index("ours (%)") < header.index("published (%)") < header.index("delta (points)")
    line = next(l for l in md.splitlines() if l.startswith(f"| {lrm} ") and "| clean |" in l)
    assert "| 70.00 | 68.50 | +1.50 |" in line and "lrm_t1_cifar10_lrm" in line and "LRM" in line
    line = next(l for l in md.splitlines() if l.startswith(f"| {lrm} ") and "| pgd20_xent |" in l)
    assert "| 48.61 | 51.00 | -2.39 |" in line
    line = next(l for l in md.splitlines() if l.startswith(f"| {lrm} ") and "| pgd40_xent |" in l)
    assert "| 45.00 | — | — |" in line
    line = next(l for l in md.splitlines() if l.startswith(f"| {madry} ") and "| fgsm_cw |" in l)
    assert "| — | 95.41 | — |" in line
    # Mean |delta| over the 7 numbers with both sides: clean, fgsm, pgd5, pgd10, pgd20 (LRM) and
    # clean, pgd40 (Madry).
    deltas = [1.5, 50 - 52.8, 50 - 53.8, 50 - 51.4, 48.61 - 51.0, 98.8 - 98.8, 95 - 93.2]
    assert f"7 numbers compared; mean |delta| {sum(map(abs, deltas)) / 7:.2f} points" in md


def test_flagfile_recorded_in_flags_json_wins(tmp_path):
    run = _run(
        tmp_path / "runs" / "lrm_t1_cifar10_pgd",
        {
            "_sources": {  # as the entry point records where each value came from
                "batch_size": "flagfile: flags/base/madry_mnist.cfg",
                "dataset": "flagfile: flags/alp_t7_mnist_squeeze.cfg",
                "seed": "default",
            },
            "model_dir": "x",
        },
        {"clean": 0.99},
    )
    [row] = [r for r in compare.compare_runs([run]) if r["attack"] == "clean"]
    assert row["stem"] == "alp_t7_mnist_squeeze" and row["published"] == 99.0


def test_unmatched_and_unfinished_runs(tmp_path):
    stranger = _run(tmp_path / "my_experiment", {"model_dir": "my_experiment"}, {"clean": 0.5})
    unfinished = _run(tmp_path / "alp_t2_svhn_alp", {"model_dir": "runs/alp_t2_svhn_alp"}, None)
    rows = compare.compare_runs([stranger, unfinished])
    [r] = [r for r in rows if r["run"] == stranger]
    assert r["stem"] is None and r["ours"] == 50.0 and r["published"] is None
    assert {r["attack"] for r in rows if r["run"] == unfinished} == set(
        PUBLISHED["alp_t2_svhn_alp"]["results"]
    )
    assert all(r["ours"] is None and r["note"] == compare.NO_RESULTS for r in rows if r["run"] == unfinished)
    md = compare.compare_markdown(rows)
    assert "No published row matches: " + stranger in md
    assert "No results yet (results.json, transfer*.json): " + unfinished in md


def test_missing_run_directory_is_a_clear_error(tmp_path):
    with pytest.raises(compare.CompareError, match="no such run directory"):
        compare.compare_runs([str(tmp_path / "nope")])


def test_write_comparison_files(two_runs, tmp_path):
    rows = compare.compare_runs(list(two_runs))
    json_path, md_path = compare.write_comparison(str(tmp_path / "out"), rows)
    assert json.loads(open(json_path).read())["rows"] == json.loads(json.dumps(rows))
    text = open(md_path).read()
    assert text.startswith("# Ours vs published") and compare.compare_markdown(rows) in text


def test_blackbox_columns_from_the_transfer_matrix(tmp_path):
    """A --mode=transfer run of an LRM table 2 row: accuracy[source][target] -> blackbox keys."""
    run = tmp_path / "lrm_t2_cifar10_pgd"
    run.mkdir()
    sources = [f"lrm_bbsource_cifar10_{m}" for m in ("regular", "label_smoothing", "pgd", "alp", "lrm")]
    accuracy = {s: {"lrm_t1_cifar10_pgd": 0.60 + i / 100} for i, s in enumerate(sources)}
    (run / "transfer.json").write_text(
        json.dumps(
            {
                "attack": "pgd10_xent",
                "sources": sources,
                "targets": ["lrm_t1_cifar10_pgd"],
                "accuracy": accuracy,
                "examples": 10000,
                "white_box": [],
            }
        )
    )
    rows = compare.compare_runs([str(run)])
    assert len(rows) == 5 and all(r["stem"] == "lrm_t2_cifar10_pgd" for r in rows)
    r = _by(rows, str(run), "blackbox:lrm_bbsource_cifar10_regular:pgd10_xent")
    assert r["ours"] == pytest.approx(60.0) and r["published"] == 69.8 and r["delta"] == pytest.approx(-9.8)
    r = _by(rows, str(run), "blackbox:lrm_bbsource_cifar10_lrm:pgd10_xent")
    assert r["ours"] == pytest.approx(64.0) and r["published"] == 55.7 and r["delta"] == pytest.approx(8.3)
    assert r["examples"] == 10000
