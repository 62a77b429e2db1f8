"""Figures as files: matplotlib on the Agg backend (no display) and atomic PNG writes."""

from __future__ import annotations

import os


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


def save_figure(fig, path: str) -> None:
    """Saves a matplotlib figure as PNG atomically (temporary file, then rename) and closes it.

    Args:
      fig: a `matplotlib.figure.Figure`; closed afterwards, also when saving fails.
      path: the PNG path; its directory is created if missing.

    Raises:
      OSError: the directory cannot be written (no temporary file is left behind).
    """
    plt = pyplot()
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    tmp = os.path.join(directory, f".{os.path.basename(path)}.tmp.png")
    try:
        fig.tight_layout()
        fig.savefig(tmp, format="png")
        os.replace(tmp, path)
    finally:
        plt.close(fig)
        if os.path.exists(tmp):
            os.remove(tmp)
