"""Render a tuning job's six metric curves to a PNG: the CLI's `jobs metrics --png` and the emulator console's.

Two rows of three: the training metrics (blue), then the evaluation metrics (orange), each titled as in
Vertex AI. A metric with no point yet gets an empty panel saying so, so the layout stays fixed.
"""

from __future__ import annotations

import io
import threading
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
TRAIN_COLOUR, EVAL_COLOUR = "#1a73e8", "#e8710a"
WIDTH_INCHES, HEIGHT_INCHES, DPI = 12.0, 6.5, 100  # 1200 x 650 pixels
_DRAWING = threading.Lock()  # matplotlib shares its font objects between figures: one drawing at a time


def curves_png(series: Mapping[str, Series], *, title: str) -> bytes:
    """The six curves of `series` (`TuningApi.metric_series`: names without the leading slash) as PNG bytes.

    A plain `Figure` (no pyplot, so no display or global figure list), drawn under a lock: the emulator calls
    this from its request threads. Matplotlib is imported here, by the first drawing only.
    """
    with _DRAWING:
        return _draw(series, title)


def _draw(series: Mapping[str, Series], title: str) -> bytes:
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(WIDTH_INCHES, HEIGHT_INCHES), dpi=DPI)
    figure.suptitle(title, fontsize=11)
    for axis, (metric, label) in zip(figure.subplots(2, 3).flat, PANELS, strict=True):  # one axis per panel
        points = series.get(metric) or ()
        axis.set_title(label, fontsize=10)
        axis.set_xlabel("step", fontsize=9)
        axis.tick_params(labelsize=8)
        axis.xaxis.set_major_locator(MaxNLocator(integer=True, steps=[1, 2, 5, 10]))  # whole steps
        axis.grid(True, color="#e0e0e0", linewidth=0.6)
        if not points:
            axis.text(0.5, 0.5, "no points yet", ha="center", va="center", color="#80868b", transform=axis.transAxes)
            continue
        steps, values = zip(*points, strict=True)  # (step, value) pairs
        colour = EVAL_COLOUR if metric.startswith("eval_") else TRAIN_COLOUR
        axis.plot(steps, values, color=colour, linewidth=2, marker="o" if len(points) < 30 else None, markersize=3)
    figure.tight_layout()
    out = io.BytesIO()
    figure.savefig(out, format="png", dpi=DPI)
    return out.getvalue()


def render_curves(series: Mapping[str, Series], path: Path, *, title: str) -> Path:
    """Write `curves_png(series)` to `path`; returns `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(curves_png(series, title=title))
    return path
