"""How the run's figures look: sizes, colours and labels, and the drawing helpers the
figure modules share (matplotlib's object API, no pyplot, so no global state)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator

from embedpatch.io.atomic import atomic_output
from embedpatch.reasons import RoiWarning
from embedpatch.report.figure_data import STAGES
from embedpatch.vocab import IMAGE_TYPES

DPI = 110

TYPE_LABELS = dict(zip(IMAGE_TYPES, ["2D", "C-view", "DBT (3D)"], strict=True))
TYPE_COLORS = dict(zip(IMAGE_TYPES, ["#1f77b4", "#ff7f0e", "#2ca02c"], strict=True))
STAGE_COLORS = dict(zip(STAGES, ["#d62728", "#9467bd"], strict=True))
STAGE_LABELS = dict(zip(STAGES, ["ROI validation", "patch extraction"], strict=True))
BOX_COLOR = "#ff3030"
MIRROR_COLOR = "#00e5ff"

FUNNEL_PANELS = {
    "metadata rows": ("rows_in", "rows_kept"),
    "ROIs": ("rois_declared", "rois_accepted", "rois_rejected", "rois_with_patches"),
    "patches": ("patches", "patches_roi", "patches_negative"),
}
WARNING_LABELS = {
    RoiWarning.CLIPPED: "clipped to the image",
    RoiWarning.NEAR_DUPLICATE: "near-duplicate of an earlier ROI",
    RoiWarning.SUSPECT_FLIP: "suspect flip (box on background)",
    RoiWarning.FLIP_FIXED: "flip fixed (box mirrored)",
    RoiWarning.SUSPECT_AXES_SWAPPED: "axes swapped? (fits as [x, y, x, y])",
    RoiWarning.AXES_FIXED: "axes fixed (read swapped)",
    RoiWarning.FRAMES_ON_2D: "frame 0 listed on a 2D image",
}


# ---- shared helpers ---------------------------------------------------------------------


def new_figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def message_figure(title: str, text: str) -> Figure:
    """A figure saying why there is nothing to draw."""
    fig = new_figure(7, 2.5)
    fig.suptitle(title)
    empty_message(fig.subplots(), text)
    return fig


def empty_message(ax: Axes, text: str) -> None:
    """Say in the middle of `ax` why it is empty."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def type_legend(fig: Figure, types: Iterable[str] = IMAGE_TYPES) -> None:
    handles = [Patch(color=TYPE_COLORS[kind], label=TYPE_LABELS[kind]) for kind in types]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), title="image type")


def count_axis(ax: Axes, values: Iterable[float], factor: float) -> None:
    """An integer x axis reaching `factor` times the longest bar (room for the count labels)."""
    ax.set_xlim(0, max(max(values, default=0), 1) * factor)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def draw_box(ax: Axes, box: Sequence[int], color: str, **style: object) -> None:
    ymin, xmin, ymax, xmax = box
    ax.add_patch(
        Rectangle((xmin, ymin), xmax - xmin, ymax - ymin, fill=False, edgecolor=color, **style)
    )


def describe_image(row: pd.Series) -> str:
    """'DBT (3D) R MLO' for an image row."""
    kind = TYPE_LABELS.get(row["FinalImageType"], row["FinalImageType"])
    return f"{kind} {row['ImageLateralityFinal']} {row['ViewPosition']}"


def save_png(fig: Figure, path: str | Path) -> None:
    """Write `fig` as a PNG, atomically."""
    with atomic_output(path) as temporary:
        fig.savefig(temporary, format="png", dpi=DPI)
