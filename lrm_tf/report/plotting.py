"""Figures as files: matplotlib on the Agg backend (no display), a caption naming what the
figure shows (`RunLabel`: the run, model and dataset; the caller adds the attack, its strength
and the accuracy it reached), and atomic PNG writes that carry the title and caption as PNG
text (Title, Description), so a figure found on its own still says where it comes from."""

from __future__ import annotations

import dataclasses
import json
import os
import textwrap
from collections.abc import Sequence

CAPTION_FONT = 8  # points


@dataclasses.dataclass(frozen=True)
class RunLabel:
    """What a figure is about: the run (a run directory or a model's path), the model and the
    dataset."""

    run: str
    model: str
    dataset: str

    def text(self) -> str:
        """'run <run> | model <model> | dataset <dataset>'."""
        return f"run {self.run} | model {self.model} | dataset {self.dataset}"


def _run_flags(path: str) -> dict:
    """flags.json of the run directory `path`, or of the run that holds `path` (its
    saved_model/ or model.keras); {} when there is none."""
    path = os.path.abspath(path)
    for folder in (path, os.path.dirname(path)):
        flags_path = os.path.join(folder, "flags.json")
        if os.path.isfile(flags_path):
            with open(flags_path) as f:
                return json.load(f)
    return {}


def run_label(out_dir: str, source: str | None = None, model=None, dataset: str | None = None) -> RunLabel:
    """The label of figures written to `out_dir` about the model loaded from `source`.

    The run's flags.json (of `source`, else of `out_dir`) gives the model and the dataset;
    without one, the model's name (a Keras model's `name`, else the source's folder name)
    and `dataset`.

    Args:
      out_dir: where the figures go.
      source: the evaluated run directory, SavedModel or .keras file (default: `out_dir`).
      model: the model object, named when no flags.json names it.
      dataset: the dataset when no flags.json names it.

    Returns:
      A RunLabel; what is not known reads 'not given'.
    """
    source = source or out_dir
    flags = _run_flags(source) or _run_flags(out_dir)
    name = flags.get("model") or getattr(model, "name", None) or os.path.basename(os.path.normpath(source))
    dataset = flags.get("dataset") or dataset or "not given"
    return RunLabel(run=os.path.normpath(source), model=str(name), dataset=str(dataset))


def pyplot():
    """matplotlib.pyplot on the Agg backend: files only, no display needed.

    Returns:
      The `matplotlib.pyplot` module. Imported on first use, so that `lrm_tf` imports
      without matplotlib until a figure is drawn.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def integer_ticks(*axes) -> None:
    """Whole-number tick labels on counting axes: `integer_ticks(ax.yaxis, ax.xaxis)`."""
    from matplotlib.ticker import MaxNLocator

    for axis in axes:
        axis.set_major_locator(MaxNLocator(integer=True))


def figure_texts(fig, caption: Sequence[str] = ()) -> dict[str, str]:
    """{'Title': the figure's title, 'Description': its caption lines (unwrapped)}: the texts
    a figure of lrm_tf carries, as written into the PNG."""
    title = fig._suptitle.get_text() if getattr(fig, "_suptitle", None) is not None else ""
    if not title and fig.axes:
        title = fig.axes[0].get_title()
    return {"Title": title, "Description": "\n".join(caption)}


def save_figure(fig, path: str, caption: str | Sequence[str] = ()) -> None:
    """Adds `caption` under the figure, then saves it as PNG atomically (temporary file, then
    rename) with its title and caption as PNG text, and closes it.

    Args:
      fig: a `matplotlib.figure.Figure`; closed afterwards, also when saving fails.
      path: the PNG path; its directory is created if missing.
      caption: lines naming the run, model, dataset and the attack with its parameters and
        the accuracy it reached (`RunLabel.text` and the caller's lines); long lines wrap.

    Raises:
      OSError: the directory cannot be written (no temporary file is left behind).
    """
    plt = pyplot()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp.png")
    try:
        caption = [caption] if isinstance(caption, str) else list(caption)
        width = max(int(fig.get_figwidth() * 72 / (0.55 * CAPTION_FONT)), 40)
        wrap = dict(break_long_words=False, break_on_hyphens=False)
        lines = [part for line in caption for part in textwrap.wrap(line, width, **wrap) or [""]]
        if lines:
            fig.text(0.5, 0.01, "\n".join(lines), ha="center", va="bottom", fontsize=CAPTION_FONT)
        band = (len(lines) * CAPTION_FONT * 1.3 / 72 + 0.15) / fig.get_figheight() if lines else 0.0
        engine = fig.get_layout_engine()
        if engine is not None and type(engine).__name__ == "ConstrainedLayoutEngine":
            engine.set(rect=(0, band, 1, 1 - band))  # (left, bottom, width, height)
        else:
            fig.tight_layout(rect=(0, band, 1, 1))  # (left, bottom, right, top)
        import lrm_tf

        metadata = {**figure_texts(fig, caption), "Software": f"lrm_tf {lrm_tf.__version__}"}
        fig.savefig(tmp, format="png", metadata=metadata)
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
