"""Pictures and files of the robustness curves (`lrm_tf.eval.curves`): accuracy against eps,
PGD steps or restarts, laid out like Shafahi et al. 2019's tables 9-11."""

from __future__ import annotations

import os

from lrm_tf.report import tensorboard
from lrm_tf.report.plotting import RunLabel, integer_ticks, pyplot, save_figure
from lrm_tf.report.writer import write_report

_AXIS_LABELS = {
    "eps": "eps (perturbation budget, [0, 1] pixel scale)",
    "steps": "PGD steps",
    "restarts": "random restarts (worst case kept)",
}


def _title(curve: dict) -> str:
    if curve["curve"] == "eps":
        return (
            f"Accuracy vs eps: {curve['attack']}, {curve['eps_step_rule'].split(' (')[0]}"
            f"\n(sanity check, Shafahi et al. table 9)"
        )
    if curve["curve"] == "steps":
        return (
            f"Accuracy vs PGD steps: {curve['norm']} {curve['loss']} loss, "
            f"eps={curve['eps']:.4g}, step={curve['eps_step']:.4g}\n(Shafahi et al. table 11)"
        )
    return (
        f"Accuracy vs restarts: {curve['attack']}, eps={curve['eps']:.4g}, "
        f"step={curve['eps_step']:.4g}\n(Shafahi et al. table 10)"
    )


def caption(curve: dict, label: RunLabel | None = None) -> list[str]:
    """The caption of a curve's figure: the run, model and dataset, and the accuracy the
    strongest point reached."""
    points = curve["points"]
    low = min(points, key=lambda p: p["accuracy"])
    attack = low.get("attack", curve.get("attack", "pgd"))
    reached = (
        f"lowest accuracy {100 * low['accuracy']:.1f}% of {low['examples']} examples at "
        f"{curve['x']} = {low['x']:g} ({attack}, eps {low['eps']:.4g}, "
        f"step {low['eps_step']:.4g}, {low['restarts']} start{'s' if low['restarts'] > 1 else ''})"
    )
    return [label.text(), reached] if label is not None else [reached]


def plot_curve(curve: dict, path: str, caption: list[str] | tuple = ()) -> None:
    """Accuracy (percent) against the swept quantity, each point labelled with its value.

    Args:
      curve: a sweep's result.
      path: the PNG to write (atomically).
      caption: lines under the figure (`caption`).
    """
    plt = pyplot()
    xs = [p["x"] for p in curve["points"]]
    ys = [100 * p["accuracy"] for p in curve["points"]]
    fig, ax = plt.subplots(figsize=(6.4, 4.4), dpi=120)
    ax.plot(xs, ys, marker="o", color="tab:blue")
    for x, y in zip(xs, ys):
        ax.annotate(f"{y:.1f}%", (x, y), textcoords="offset points", xytext=(0, 7), ha="center", fontsize=8)
    if curve["curve"] == "steps" and len(xs) > 1 and min(xs) > 0 and max(xs) / min(xs) >= 10:
        ax.set_xscale("log")
        ax.set_xticks(xs, [str(x) for x in xs])
    if curve["curve"] == "restarts":
        ax.set_xticks(xs)
    elif curve["curve"] == "steps" and ax.get_xscale() == "linear":
        integer_ticks(ax.xaxis)
    ax.set_ylim(-3, 105)
    ax.set_xlabel(_AXIS_LABELS[curve["curve"]])
    ax.set_ylabel(f"accuracy (%) on {curve['points'][0]['examples']} examples")
    ax.set_title(_title(curve), fontsize=10)
    ax.grid(True, alpha=0.3)
    save_figure(fig, path, caption)


def write_curve(out_dir: str, name: str, curve: dict, label: RunLabel | None = None) -> tuple[str, str]:
    """Writes `<name>.json` and `<name>.png` in `out_dir` (both atomically), and the figure
    to `<out_dir>/tensorboard/eval`.

    Args:
      out_dir: the directory (created if missing).
      name: the file stem, e.g. 'curve_eps'.
      curve: a sweep's result.
      label: the run, model and dataset the caption names.

    Returns:
      (json_path, png_path).
    """
    json_path, _ = write_report(out_dir, name, curve)
    png_path = os.path.join(out_dir, f"{name}.png")
    lines = caption(curve, label)
    plot_curve(curve, png_path, lines)
    tensorboard.write_figure(out_dir, name, png_path, "\n".join(lines))
    return json_path, png_path
