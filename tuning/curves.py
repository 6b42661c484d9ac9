"""Render a tuning job's six metric curves to a PNG, laid out like the emulator console's charts.

Two rows of three: the training metrics (blue), then the evaluation metrics (orange), each titled as in the
console and in Vertex AI. A metric with no point yet gets an empty panel saying so, so the layout stays fixed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Mapping

from tuning.progress import Series

PANELS = (
    ("train_total_loss", "Train total loss"),
    ("train_fraction_of_correct_next_step_preds", "Train fraction of correct next step preds"),
    ("train_num_predictions", "Train num predictions"),
    ("eval_total_loss", "Eval total loss"),
    ("eval_fraction_of_correct_next_step_preds", "Eval fraction of correct next step preds"),
    ("eval_num_predictions", "Eval num predictions"),
)
TRAIN_COLOUR, EVAL_COLOUR = "#1a73e8", "#e8710a"  # the console's
WIDTH_INCHES, HEIGHT_INCHES, DPI = 12.0, 6.5, 100  # 1200 x 650 pixels


def render_curves(series: Mapping[str, Series], path: Path, *, title: str) -> Path:
    """Write the six curves of `series` (`TuningApi.metric_series`) to `path` as a PNG; returns `path`."""
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed (CI, SSH)
    from matplotlib import pyplot

    figure, axes = pyplot.subplots(2, 3, figsize=(WIDTH_INCHES, HEIGHT_INCHES), dpi=DPI)
    try:
        figure.suptitle(title, fontsize=11)
        for axis, (metric, label) in zip(axes.flat, PANELS, strict=True):  # a 2 x 3 grid: one axis per panel
            points = series.get(metric) or ()
            axis.set_title(label, fontsize=10)
            axis.set_xlabel("step", fontsize=9)
            axis.tick_params(labelsize=8)
            axis.grid(True, color="#e0e0e0", linewidth=0.6)
            if not points:
                axis.text(0.5, 0.5, "no points yet", ha="center", va="center", color="#80868b",
                          transform=axis.transAxes)
                continue
            steps, values = zip(*points, strict=True)  # (step, value) pairs
            colour = EVAL_COLOUR if metric.startswith("eval_") else TRAIN_COLOUR
            axis.plot(steps, values, color=colour, linewidth=2, marker="o" if len(points) < 30 else None,
                      markersize=3)
        figure.tight_layout()
        path.parent.mkdir(parents=True, exist_ok=True)
        figure.savefig(path, dpi=DPI)
    finally:
        pyplot.close(figure)
    return path
