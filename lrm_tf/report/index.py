"""README.md of a run directory: what the run is, its results table, and links to every
report, figure, log and file in it with one line on what each holds, and the TensorBoard
command, so that a person can read a run without knowing the layout.

Written when training starts and whenever a mode records its provenance (`writer`), so it
follows what the directory holds; regenerated from the files each time (no state of its own).
"""

from __future__ import annotations

import dataclasses
import fnmatch
import json
import os

from lrm_tf.report import tensorboard
from lrm_tf.report.rundir import write_text_atomic

INDEX = "README.md"

# (pattern, section, what the file holds): the first matching pattern describes a file.
FILES = (
    ("results.md", "Results", "accuracy under each attack, the worst case over all of them"),
    ("audit.md", "Results", "gradient-masking audit: paired comparisons and the verdict"),
    ("transfer*.md", "Results", "black-box transfer matrix (rows: source models, columns: targets)"),
    ("comparison.md", "Results", "these runs beside the papers' published numbers"),
    ("analysis_logits.png", "Figures", "logit distributions, clean and adversarial (LRM figs. 1-2)"),
    ("analysis_eps_l.png", "Figures", "linearised robustness eps_L (Shafahi et al. eq. 4, fig. 1)"),
    ("analysis_landscape.png", "Figures", "loss landscape around test images (Shafahi et al. fig. 9)"),
    ("analysis_activations.png", "Figures", "penultimate-layer activations (Shafahi et al. fig. 10)"),
    ("curve_eps.png", "Figures", "accuracy vs eps up to the unbounded eps (Shafahi et al. table 9)"),
    ("curve_steps.png", "Figures", "accuracy vs PGD steps (Shafahi et al. table 11)"),
    ("curve_restarts.png", "Figures", "accuracy vs random restarts (Shafahi et al. table 10)"),
    ("*.png", "Figures", "figure"),
    ("metrics.csv", "Training", "one row per epoch: loss, each objective term, accuracy, lr, seconds"),
    ("tensorboard", "Training", "TensorBoard logs: training per epoch, evaluation, figures, settings"),
    ("checkpoints", "Training", "the last checkpoints (resume with the same command)"),
    ("flags.json", "Files", "the resolved settings (`_sources`: where each value came from)"),
    (
        "provenance.json",
        "Files",
        "how each mode's results were made: settings, seed, versions, date, command",
    ),
    ("run_state.json", "Files", "training / finished / diverged / not_learning"),
    ("saved_model", "Files", "the classifier as a SavedModel (images in [0, 1] -> logits)"),
    ("model.keras", "Files", "the classifier as a Keras file"),
    ("results.json", "Files", "results.md's numbers, with each attack's parameters"),
    ("results_per_example.npz", "Files", "per attack, whether each test example stayed correct"),
    ("adversarial_*.npz", "Files", "an attack's adversarial examples (x_adv, labels, correct)"),
    ("audit.json", "Files", "audit.md's numbers"),
    ("transfer*.json", "Files", "transfer.md's numbers"),
    ("comparison.json", "Files", "comparison.md's numbers"),
    ("analysis_*.json", "Files", "an analysis' numbers (its figure's data)"),
    ("curve_*.json", "Files", "a curve's points"),
    ("*.md", "Results", "report"),
)
SECTIONS = ("Results", "Figures", "Training", "Files")


def _json(path: str):
    try:
        with open(path) as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _describe(folder: str, name: str, what: str) -> str:
    """One line about a file: its default text, or a figure's own title."""
    if name.endswith(".png") and what == "figure":
        try:
            from PIL import Image

            with Image.open(os.path.join(folder, name)) as image:
                return image.text.get("Title", "").replace("\n", " ") or what
        except (ImportError, OSError):
            return what
    return what


def _objective(flags: dict) -> list[str]:
    """The objective's settings that differ from their defaults, as 'name=value'."""
    from lrm_tf.config import Objective

    changed = []
    for field in dataclasses.fields(Objective):
        if field.name in flags and field.default is not dataclasses.MISSING:
            value, default = flags[field.name], field.default
            default = list(default) if isinstance(default, tuple) else default
            if value != default and value not in ("", None):
                changed.append(f"{field.name}={value}")
    return changed


def _summary(folder: str) -> list[str]:
    """What the run is: model, dataset, objective, epochs; and the results table. (Not its
    state: run_state.json changes after the last mode records its provenance.)"""
    flags = _json(os.path.join(folder, "flags.json")) or {}
    lines = []
    if flags:
        what = f"`{flags.get('model')}` on `{flags.get('dataset')}`, mode `{flags.get('mode', 'train')}`"
        terms = _objective(flags)
        lines.append(f"{what}; objective: {', '.join(terms) if terms else 'cross-entropy only'}.")
    records = _json(os.path.join(folder, "provenance.json")) or {}
    evaluated = sorted(
        {r["evaluated"] for r in records.values() if isinstance(r, dict) and r.get("evaluated")}
    )
    if evaluated and evaluated != [folder]:
        lines.append(f"Evaluated model: {', '.join(f'`{e}`' for e in evaluated)} (provenance.json).")
    epochs = tensorboard.model_step(folder)
    if epochs:
        lines.append(f"Trained {epochs} epochs (metrics.csv).")
    results = _json(os.path.join(folder, "results.json"))
    if isinstance(results, dict) and results:
        lines += ["", "| attack | accuracy | examples |", "|---|---:|---:|"]
        for attack, row in results.items():
            if isinstance(row, dict) and "accuracy" in row:
                lines.append(f"| {attack} | {100 * row['accuracy']:.2f}% | {row.get('examples', '')} |")
    audit = _json(os.path.join(folder, "audit.json"))
    if isinstance(audit, dict) and audit.get("verdict"):
        lines += ["", f"Audit verdict: {audit['verdict']}"]
    return lines


def index_markdown(folder: str) -> str:
    """The README.md text of the run directory `folder` (from the files it holds now)."""
    entries = {section: [] for section in SECTIONS}
    for name in sorted(os.listdir(folder)):
        if name.startswith(".") or name == INDEX:
            continue
        for pattern, section, what in FILES:
            if fnmatch.fnmatch(name, pattern):
                link = name + ("/" if os.path.isdir(os.path.join(folder, name)) else "")
                entries[section].append(f"- [{link}]({link}): {_describe(folder, name, what)}")
                break
    lines = [f"# Run {os.path.basename(os.path.normpath(folder))}", "", f"`{folder}`", ""]
    lines += _summary(folder)
    for section in SECTIONS:
        if entries[section]:
            lines += ["", f"## {section}", "", *entries[section]]
    if os.path.isdir(os.path.join(folder, "tensorboard")):
        lines += [
            "",
            "## TensorBoard",
            "",
            "```bash",
            tensorboard.command(folder),
            "```",
            "",
            "train/: one point per epoch of metrics.csv (step = epoch); eval/: `accuracy/<attack>` "
            "and the figures, at the epoch of the evaluated model; the HParams tab: the settings.",
        ]
    text = "\n".join(lines)
    while "\n\n\n" in text:
        text = text.replace("\n\n\n", "\n\n")
    return text + "\n"


def write_index(folder: str) -> str:
    """Writes (atomically) `<folder>/README.md` from what the folder holds.

    Returns:
      The path of README.md.

    Raises:
      OSError: the folder cannot be written.
    """
    path = os.path.join(folder, INDEX)
    write_text_atomic(path, index_markdown(folder))
    return path
