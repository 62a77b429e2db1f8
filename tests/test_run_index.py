"""README.md of a run directory (issue 15, scope 5): links to the results table, figures,
audit, logs and files, and the TensorBoard command; every link resolves."""

import json
import re

from lrm_tf.report import tensorboard, writer
from lrm_tf.report.index import index_markdown
from lrm_tf.report.plotting import pyplot, save_figure


def _fake_run(folder):
    (folder / "flags.json").write_text(
        json.dumps({"model": "mnist_cnn", "dataset": "digits", "mode": "train", "logit_squeeze": 0.5})
    )
    (folder / "run_state.json").write_text(json.dumps({"status": "finished"}))
    (folder / "metrics.csv").write_text("epoch,step,loss\n1,10,2.0\n2,20,1.0\n")
    results = {"clean": {"accuracy": 0.9, "examples": 10}, "worst_case": {"accuracy": 0.1, "examples": 10}}
    writer.write_report(str(folder), "results", results, "# results\n")
    writer.write_report(str(folder), "audit", {"verdict": "no sign of gradient masking"}, "# audit\n")
    fig = pyplot().figure(figsize=(2, 1))
    fig.suptitle("a custom figure")
    save_figure(fig, str(folder / "extra.png"), ["run x | model y | dataset z"])
    (folder / "analysis_logits.png").write_bytes((folder / "extra.png").read_bytes())
    tensorboard.write_scalars(str(folder / "tensorboard" / "train"), 1, {"loss": 2.0})


def test_every_mode_leaves_a_readme_that_links_what_the_run_holds(tmp_path):
    _fake_run(tmp_path)
    writer.write_provenance(
        str(tmp_path), "analyze", writer.provenance({}, 0, evaluated="runs/x/saved_model")
    )
    text = (tmp_path / "README.md").read_text()
    for needed in (
        "[results.md](results.md)",
        "[audit.md](audit.md)",
        "[analysis_logits.png](analysis_logits.png): logit distributions",
        "[extra.png](extra.png): a custom figure",
        "[metrics.csv](metrics.csv)",
        "[tensorboard/](tensorboard/)",
        f"tensorboard --logdir {tmp_path}/tensorboard",
        "| clean | 90.00% | 10 |",
        "| worst_case | 10.00% | 10 |",
        "Audit verdict: no sign of gradient masking",
        "`mnist_cnn` on `digits`",
        "logit_squeeze=0.5",
        "Trained 2 epochs",
        "Evaluated model: `runs/x/saved_model`",
    ):
        assert needed in text, (needed, text)
    for target in re.findall(r"\]\(([^)]+)\)", text):
        assert (tmp_path / target).exists(), target
    assert "README.md" not in re.findall(r"\]\(([^)]+)\)", text)


def test_an_empty_directory_has_a_short_readme(tmp_path):
    text = index_markdown(str(tmp_path))
    assert text.startswith(f"# Run {tmp_path.name}") and "TensorBoard" not in text
