"""Every figure names what it shows (issue 15, criterion 3): the run, model and dataset, and
the attack with its parameters and the accuracy it reached; the default analysis attack
reaches the eps boundary (no weaker than PGD-20 with the dataset's step)."""

import glob
import json
import os

from PIL import Image
from test_analysis import digits, mlp  # noqa: F401 (fixtures)
from test_curves import assert_valid_png
from test_tensorboard import read_events

from lrm_tf.config import AnalysisConfig, Threat
from lrm_tf.data import dataset_info
from lrm_tf.eval import analysis, curves, evaluation


def png_texts(path) -> str:
    """The title and caption lrm_tf writes into a PNG (the figure's own texts)."""
    with Image.open(path) as image:
        return f"{image.text.get('Title', '')}\n{image.text.get('Description', '')}"


def test_every_png_names_run_model_dataset_and_attack(mlp, digits, tmp_path):  # noqa: F811
    _, _, images, labels = digits
    run = tmp_path / "a_run"
    run.mkdir()
    (run / "flags.json").write_text(json.dumps({"model": "tiny_mlp", "dataset": "digits"}))
    info = dataset_info("digits")
    threat = Threat(eps=info.eps, eps_step=info.eps_step)
    analysis.run_analyses(
        mlp, images[:32], labels[:32], str(run), threat, landscape_images=2, landscape_points=5, log=print
    )
    curves.run_curves(
        mlp,
        images[:32],
        labels[:32],
        str(run),
        ["eps", "steps", "restarts"],
        threat,
        steps=3,
        eps_values=[0.1, 1.0],
        steps_values=[1, 3],
        restarts_values=[1, 2],
        log=print,
    )
    pngs = sorted(glob.glob(str(run / "*.png")))
    assert len(pngs) == 7
    for png in pngs:
        assert_valid_png(png)
        text = png_texts(png)
        eps = "eps 1" if png.endswith("curve_eps.png") else "eps 0.3"  # the sweep's strongest
        for needed in (f"run {run}", "model tiny_mlp", "dataset digits", eps, "accuracy", "step"):
            assert needed in text, (os.path.basename(png), needed, text)
    logits = png_texts(run / "analysis_logits.png")
    assert "apgd_ce: 100 steps" in logits and "% of 32 examples" in logits
    assert "fgsm_xent: one step of eps" in png_texts(run / "analysis_landscape.png")
    assert "0.01" in png_texts(run / "curve_steps.png")  # the step size
    _, images_logged = read_events(str(run / "tensorboard" / "eval"))
    assert {tag for tag, _, _ in images_logged} == {os.path.basename(p)[:-4] for p in pngs}


def test_a_figure_without_a_run_directory_names_the_model(mlp, digits, tmp_path):  # noqa: F811
    _, _, images, labels = digits
    threat = Threat(eps=0.3, eps_step=0.01)
    analysis.run_analyses(mlp, images[:8], labels[:8], str(tmp_path), threat, which=["eps_l"], log=print)
    text = png_texts(tmp_path / "analysis_eps_l.png")
    assert f"model {mlp.name}" in text and "dataset not given" in text and "eps 0.3" in text


def test_default_analysis_attack_is_at_least_as_strong_as_pgd20(mlp, digits):  # noqa: F811
    """The config's default and the library's are one attack; with digits' eps 0.3 and step
    0.01 it leaves at most PGD-20's accuracy (PGD-10's 10 steps of 0.01 cannot reach 0.3)."""
    _, _, images, labels = digits
    assert AnalysisConfig().analysis_attack == analysis.DEFAULT_ATTACK
    info = dataset_info("digits")
    threat = Threat(eps=info.eps, eps_step=info.eps_step)

    def accuracy(attack):
        return evaluation.attack_accuracy(mlp, images, labels, attack, threat, progress=False)[0]

    default, pgd20 = accuracy(analysis.DEFAULT_ATTACK), accuracy("pgd20_xent")
    print(f"{analysis.DEFAULT_ATTACK}: {default:.3f}, pgd20_xent: {pgd20:.3f}")
    assert default <= pgd20


def test_run_label_reads_the_evaluated_run(tmp_path):
    """--load_from=<run>/saved_model --model_dir=<elsewhere>: the figures name the loaded run's
    model and dataset, read from the run holding the SavedModel."""
    from lrm_tf.report.plotting import run_label

    run = tmp_path / "run"
    (run / "saved_model").mkdir(parents=True)
    (run / "flags.json").write_text(json.dumps({"model": "resnet8", "dataset": "cifar10"}))
    label = run_label(str(tmp_path / "out"), source=str(run / "saved_model"), dataset="mnist")
    assert label.text() == f"run {run / 'saved_model'} | model resnet8 | dataset cifar10"
    label = run_label(str(tmp_path / "out"), source=str(tmp_path / "x.keras"), dataset="mnist")
    assert label.text() == f"run {tmp_path / 'x.keras'} | model x.keras | dataset mnist"
