"""Summary figures of a pipeline run: one plotting function per figure, plus the rules' entry.

What each figure shows (counts, samples, selections, pixel display values) is computed
by embedpatch.report.figure_data, without drawing; this module reads the run's tables and
pixels and draws. Plotting functions take tables or arrays and return a matplotlib
Figure (no pyplot, so no global state). `write_figures` is what the rules call: it
reads only the tables a figure needs (and only their needed columns), and for the pixel
figures a bounded, seeded sample of patches (from the shards) and of images (one frame
at a time), so its cost does not grow with the number of exams beyond reading the tables.

Display conventions: tissue bright (MONOCHROME1 pixels inverted), contrast stretched
per image or patch over the pixels that came from the image (padding stays black);
boxes are (ymin, xmin, ymax, xmax), max exclusive, drawn as
Rectangle((xmin, ymin), xmax - xmin, ymax - ymin) on pixel edges.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import h5py
import hdf5plugin  # noqa: F401  registers the shards' compression filters with h5py
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from matplotlib.ticker import MaxNLocator

from embedpatch.dicom import ImageHeader, ImageReader, read_header
from embedpatch.geometry import Mirror
from embedpatch.io.atomic import atomic_output
from embedpatch.patches.shards import INFO_COLUMNS
from embedpatch.reasons import RoiWarning
from embedpatch.report.figure_data import (
    BALANCE_COLUMNS,
    COUNT_COLUMNS,
    LABELS,
    LOCATION_POINTS,
    MISSING,
    SEED,
    STAGES,
    content_mask,
    context_window,
    dbt_frame_stats,
    display_range,
    extracted_rois,
    gallery_rows,
    image_types_in,
    label_counts,
    negative_sources,
    normalized_centres,
    ordered_values,
    overlay_2d_rois,
    overlay_dbt_roi,
    patch_display,
    reason_counts,
    roi_size_groups,
    rois_per_image,
    scaled,
    suspect_flip_sample,
    tissue_bright,
    top_counts,
    warning_counts,
)
from embedpatch.report.summary import FUNNEL_STAGES, read_columns
from embedpatch.rois.stage import ACCEPTED_COLUMNS
from embedpatch.vocab import DBT, IMAGE_TYPES

log = logging.getLogger(__name__)

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


def _figure(width: float, height: float) -> Figure:
    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def message_figure(title: str, text: str) -> Figure:
    """A figure saying why there is nothing to draw."""
    fig = _figure(7, 2.5)
    fig.suptitle(title)
    _message(fig.subplots(), text)
    return fig


def _message(ax: Axes, text: str) -> None:
    """Say in the middle of `ax` why it is empty."""
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _type_legend(fig: Figure, types: Iterable[str] = IMAGE_TYPES) -> None:
    handles = [Patch(color=TYPE_COLORS[kind], label=TYPE_LABELS[kind]) for kind in types]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(handles), title="image type")


def _count_axis(ax: Axes, values: Iterable[float], factor: float) -> None:
    """An integer x axis reaching `factor` times the longest bar (room for the count labels)."""
    ax.set_xlim(0, max(max(values, default=0), 1) * factor)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _draw_box(ax: Axes, box: Sequence[int], color: str, **style: object) -> None:
    ymin, xmin, ymax, xmax = box
    ax.add_patch(
        Rectangle((xmin, ymin), xmax - xmin, ymax - ymin, fill=False, edgecolor=color, **style)
    )


def _describe(row: pd.Series) -> str:
    """'DBT (3D) R MLO' for an image row."""
    kind = TYPE_LABELS.get(row["FinalImageType"], row["FinalImageType"])
    return f"{kind} {row['ImageLateralityFinal']} {row['ViewPosition']}"


# ---- funnel and rejections ----------------------------------------------------------------


def _funnel_bar(ax: Axes, y: int, stage: Mapping) -> None:
    """One horizontal bar, stacked by image type when the stage has the split."""
    by_type = stage.get("by_image_type")
    if by_type is None:
        ax.barh(y, stage["total"], color="0.6")
        text = f"{stage['total']:,} (all image types)"
    else:
        left = 0
        for kind in IMAGE_TYPES:
            ax.barh(y, by_type[kind], left=left, color=TYPE_COLORS[kind])
            left += by_type[kind]
        split = ", ".join(f"{TYPE_LABELS[kind]} {by_type[kind]:,}" for kind in IMAGE_TYPES)
        text = f"{stage['total']:,} ({split})"
    ax.annotate(text, (stage["total"], y), xytext=(4, 0), textcoords="offset points", va="center")


def funnel_figure(funnel: Mapping[str, Mapping]) -> Figure:
    """Metadata rows, ROIs and patches through the pipeline (summary.funnel_counts)."""
    heights = [len(stages) for stages in FUNNEL_PANELS.values()]
    fig = _figure(10, 1.0 + 0.55 * sum(heights))
    axes = fig.subplots(len(FUNNEL_PANELS), 1, gridspec_kw={"height_ratios": heights})
    for ax, (unit, stages) in zip(axes, FUNNEL_PANELS.items(), strict=True):
        for y, stage in enumerate(stages):
            _funnel_bar(ax, y, funnel[stage])
        ax.set_yticks(range(len(stages)), [FUNNEL_STAGES[stage] for stage in stages])
        ax.invert_yaxis()
        _count_axis(ax, [funnel[stage]["total"] for stage in stages], 1.7)
        ax.set_title(unit[0].upper() + unit[1:], loc="left", fontweight="bold")
        ax.set_xlabel(unit)
    fig.suptitle("Pipeline funnel: metadata rows -> ROIs -> patches")
    _type_legend(fig)
    return fig


def rejections_figure(rejected: pd.DataFrame, rois: pd.DataFrame) -> Figure:
    """Refused ROIs per reason and stage, and the warnings on accepted ROIs."""
    counts = reason_counts(rejected)
    warnings = warning_counts(rois)
    fig = _figure(12, 1.5 + 0.3 * len(counts))
    left, right = fig.subplots(1, 2, width_ratios=[3, 2])
    start = np.zeros(len(counts))
    for stage, label in STAGE_LABELS.items():
        left.barh(counts.index, counts[stage], left=start, color=STAGE_COLORS[stage], label=label)
        start += counts[stage].to_numpy()
    for y, total in enumerate(start):
        left.annotate(
            f"{total:.0f}",
            (total, y),
            xytext=(3, 0),
            textcoords="offset points",
            va="center",
            color="0.5" if total == 0 else "black",
        )
    left.invert_yaxis()
    _count_axis(left, start, 1.15)
    left.set_xlabel("declared ROIs refused (a whole-row rejection counts all its ROIs)")
    left.set_title(f"Rejected ROIs by reason: {int(start.sum()):,} ROIs")
    left.legend(title="refused during", loc="lower right")
    labels = [WARNING_LABELS[RoiWarning(name)] for name in warnings.index]
    bars = right.barh(labels, warnings, height=0.5)
    share = warnings / max(len(rois), 1)
    right.bar_label(
        bars, [f"{n:,} ({p:.1%})" for n, p in zip(warnings, share, strict=True)], padding=3
    )
    right.invert_yaxis()
    _count_axis(right, warnings, 1.4)
    right.set_xlabel("accepted ROIs flagged (kept)")
    right.set_title(f"Warnings on the {len(rois):,} accepted ROIs")
    fig.suptitle("Why ROIs were refused, and what was flagged on those kept")
    return fig


# ---- ROI geometry ---------------------------------------------------------------------------


def rois_per_image_figure(rois: pd.DataFrame) -> Figure:
    """How many accepted ROIs each image has, per image type."""
    fig = _figure(8, 4.5)
    ax = fig.subplots()
    table = rois_per_image(rois)
    images = int(table.to_numpy().sum())
    fig.suptitle(f"Accepted ROIs per image ({images:,} images with at least one ROI)")
    if table.empty:
        _message(ax, "no accepted ROIs")
        return fig
    types = list(table.columns)
    width = 0.8 / len(types)
    for i, kind in enumerate(types):
        x = table.index.to_numpy() + (i - (len(types) - 1) / 2) * width
        label = f"{TYPE_LABELS[kind]} ({int(table[kind].sum()):,} images)"
        bars = ax.bar(x, table[kind], width, color=TYPE_COLORS[kind], label=label)
        ax.bar_label(bars, [f"{n:,}" if n else "" for n in table[kind]], fontsize=8)
    ax.set_xticks(table.index)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("accepted ROIs on the image")
    ax.set_ylabel("images")
    ax.legend(title="image type")
    return fig


def _histograms(ax: Axes, groups: Mapping[str, np.ndarray], unit: str) -> None:
    """Step histograms sharing bins, one per image type, n and median in the legend."""
    values = np.concatenate(list(groups.values()))
    bins = np.histogram_bin_edges(values, bins=min(40, max(5, len(values) // 3)))
    for kind, data in groups.items():
        label = f"{TYPE_LABELS[kind]}: {len(data):,} ROIs, median {np.median(data):.0f} {unit}"
        ax.hist(data, bins=bins, histtype="step", linewidth=2, color=TYPE_COLORS[kind], label=label)
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.legend(fontsize=8)


def roi_sizes_figure(rois: pd.DataFrame) -> Figure:
    """Distributions of accepted ROI heights and widths in pixels, per image type."""
    fig = _figure(11, 4.2)
    axes = fig.subplots(1, 2)
    fig.suptitle(f"Accepted ROI sizes ({len(rois):,} ROIs; pixel spacing differs by image type)")
    for ax, (name, low, high) in zip(
        axes, [("height", "ymin", "ymax"), ("width", "xmin", "xmax")], strict=True
    ):
        ax.set_xlabel(f"ROI {name} (pixels)")
        ax.set_ylabel("ROIs")
        ax.set_title(f"ROI {name}")
        if rois.empty:
            _message(ax, "no accepted ROIs")
            continue
        _histograms(ax, roi_size_groups(rois, low, high), "px")
    return fig


def _counted_hist(ax: Axes, values: np.ndarray, bins: np.ndarray, color: str) -> None:
    """A histogram with its count on every non-empty bar."""
    counts, _, bars = ax.hist(values, bins=bins, color=color, edgecolor="white")
    ax.bar_label(bars, [f"{n:,.0f}" if n else "" for n in counts])
    ax.yaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_ylim(0, max(counts.max(), 1) * 1.12)


def dbt_frames_figure(rois: pd.DataFrame) -> Figure:
    """Frame span of each DBT ROI, and where in the volume its middle frame lies."""
    dbt = rois[rois["FinalImageType"] == DBT]
    fig = _figure(11, 4.2)
    span_ax, depth_ax = fig.subplots(1, 2)
    fig.suptitle(f"Accepted DBT ROIs across the volume's frames ({len(dbt):,} ROIs)")
    for ax in (span_ax, depth_ax):
        ax.set_ylabel("DBT ROIs")
    span_ax.set_xlabel("frame span: last - first listed frame + 1")
    depth_ax.set_xlabel("middle listed frame / (frames in the volume - 1)")
    depth_ax.set_title("depth of the ROI: 0 = first frame, 1 = last")
    if dbt.empty:
        span_ax.set_title("frames each ROI spans")
        _message(span_ax, "no accepted DBT ROIs")
        _message(depth_ax, "no accepted DBT ROIs")
        return fig
    stats = dbt_frame_stats(dbt)
    gaps = int((stats["listed"] < stats["span"]).sum())
    span_ax.set_title(f"frames each ROI spans ({gaps} with gaps in their frame list)")
    longest = int(stats["span"].max())
    _counted_hist(span_ax, stats["span"], np.arange(0.5, longest + 1.5), TYPE_COLORS[DBT])
    span_ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    _counted_hist(depth_ax, stats["depth"], np.linspace(0, 1, 11), TYPE_COLORS[DBT])
    depth_ax.set_xlim(0, 1)
    return fig


def roi_locations_figure(rois: pd.DataFrame, seed: int = SEED) -> Figure:
    """Where accepted ROIs sit on the breast, per view (rows) and laterality (columns)."""
    shown = rois.sample(min(len(rois), LOCATION_POINTS), random_state=seed)
    sides = shown["ImageLateralityFinal"].fillna(MISSING)
    views = shown["ViewPosition"].fillna(MISSING)
    view_list = ordered_values(views, ("CC", "MLO")) or ["CC"]
    side_list = ordered_values(sides, ("L", "R")) or ["L", "R"]
    fig = _figure(3.6 * len(side_list) + 0.5, 3.6 * len(view_list) + 1.0)
    axes = fig.subplots(len(view_list), len(side_list), squeeze=False, sharex=True, sharey=True)
    centres = normalized_centres(shown)
    sampled = f", {len(shown):,} shown" if len(shown) < len(rois) else ""
    fig.suptitle(f"ROI centres on the normalized breast ({len(rois):,} accepted ROIs{sampled})")
    for (i, view), (j, side) in itertools.product(enumerate(view_list), enumerate(side_list)):
        ax = axes[i, j]
        here = (views == view) & (sides == side)
        for kind in image_types_in(shown):
            points = centres[here & (shown["FinalImageType"] == kind)]
            ax.scatter(points["x"], points["y"], s=14, alpha=0.7, color=TYPE_COLORS[kind])
        ax.set_title(f"{side} {view}: {int(here.sum()):,} ROIs")
        ax.axvline(0, color="0.3", linewidth=3)
        ax.set_xlim(-0.03, 1.0)
        ax.set_ylim(1.0, 0.0)
        ax.grid(alpha=0.3)
        if i == len(view_list) - 1:
            ax.set_xlabel("distance from chest wall\n(fraction of image width)")
        if j == 0:
            ax.set_ylabel("row (fraction of image height)")
    _type_legend(fig, image_types_in(shown) or IMAGE_TYPES)
    return fig


# ---- the filtered table ---------------------------------------------------------------------


def counts_figure(filtered: pd.DataFrame) -> Figure:
    """Image rows kept by the filter, by image type, view, laterality and manufacturer."""
    fig = _figure(12, 6.5)
    axes = fig.subplots(2, 2).ravel()
    for ax, (column, name) in zip(axes, COUNT_COLUMNS.items(), strict=True):
        counts = top_counts(filtered[column])
        labels = [
            TYPE_LABELS.get(value, value) if column == "FinalImageType" else value
            for value in counts.index
        ]
        bars = ax.barh(labels, counts, color="#4c72b0")
        ax.bar_label(bars, [f"{n:,}" for n in counts], padding=3)
        ax.invert_yaxis()
        _count_axis(ax, counts, 1.2)
        ax.set_title(f"by {name} ({column})")
        ax.set_xlabel("image rows")
    fig.suptitle(f"Image rows kept by the filter: {len(filtered):,}")
    return fig


LABEL_COLORS = {"roi": "#d62728", "negative": "#7f7f7f"}


def balance_figure(manifest: pd.DataFrame) -> Figure:
    """ROI (positive) and negative patches by image type, view and laterality, and the
    images negatives came from (figure_data.label_counts, negative_sources)."""
    fig = _figure(12, 6.5)
    axes = fig.subplots(2, 2).ravel()
    for ax, (column, name) in zip(axes, BALANCE_COLUMNS.items(), strict=False):
        counts = label_counts(manifest, column)
        positions = np.arange(len(counts))
        for offset, label in zip((-0.2, 0.2), LABELS, strict=True):
            bars = ax.barh(positions + offset, counts[label], 0.4, color=LABEL_COLORS[label],
                           label=label)  # fmt: skip
            ax.bar_label(bars, [f"{n:,}" for n in counts[label]], padding=3)
        ax.set_yticks(positions, [TYPE_LABELS.get(v, v) if column == "FinalImageType" else v
                                  for v in counts.index])  # fmt: skip
        ax.invert_yaxis()
        _count_axis(ax, counts.to_numpy().ravel(), 1.25)
        ax.set_title(f"patches by {name}")
    sources = negative_sources(manifest)
    bars = axes[3].barh(list(sources), list(sources.values()), color=LABEL_COLORS["negative"])
    axes[3].bar_label(bars, [f"{n:,}" for n in sources.values()], padding=3)
    axes[3].invert_yaxis()
    _count_axis(axes[3], sources.values(), 1.25)
    axes[3].set_title("images giving negative patches")
    handles = [Patch(color=LABEL_COLORS[label], label=f"{label} patches") for label in LABELS]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(LABELS))
    roi, negative = ((manifest["label"] == label).sum() for label in LABELS)
    ratio = f", {negative / roi:.2f} negatives per ROI patch" if roi else ""
    fig.suptitle(f"Patches: {roi:,} ROI, {negative:,} negative{ratio}")
    return fig


# ---- pixels: display and reading ---------------------------------------------------------


def read_patches(shard: str | Path, indices: Sequence[int]) -> tuple[list[np.ndarray], str]:
    """Patches `indices` of one shard (nothing else read) and its pixel_values setting."""
    with h5py.File(shard, "r") as file:
        patches = [file["patches"][int(index)] for index in indices]
        return patches, json.loads(file.attrs["config"])["pixel_values"]


def displayed_patches(
    chosen: pd.DataFrame, results: str | Path, headers: Mapping[str, ImageHeader]
) -> list[np.ndarray]:
    """The chosen manifest rows' patches ready to show (patch_display), in row order. Stored
    pixel values of MONOCHROME1 images are inverted; the other pixel_values are tissue bright."""
    shown: dict[int, np.ndarray] = {}
    for shard, rows in chosen.groupby("shard"):
        patches, pixel_values = read_patches(Path(results) / shard, rows["index"].tolist())
        for (label, row), patch in zip(rows.iterrows(), patches, strict=True):
            header = headers[row["anon_dicom_path"]]
            bright = tissue_bright(patch, header) if pixel_values == "stored" else patch
            shown[label] = patch_display(bright, content_mask(row, header.rows, header.columns))
    return [shown[label] for label in chosen.index]


# ---- the patch gallery --------------------------------------------------------------------


@dataclass(frozen=True)
class Tile:
    """One gallery cell: the displayed patch, its caption, and the ROI box in patch pixels."""

    pixels: np.ndarray
    caption: str
    box: tuple[int, int, int, int] | None = None


def _roi_caption(row: pd.Series, with_dtype: bool = False) -> str:
    frame = f", frame {row['frame']}" if row["frame"] >= 0 else ""
    return f"{_patch_caption(row, with_dtype)}\nROI {row['roi_index']}{frame}"


def _patch_caption(row: pd.Series, with_dtype: bool) -> str:
    """'2D R MLO', with the patch's dtype ('2D R MLO, int16') when the gallery mixes them."""
    return f"{_describe(row)}, {row['dtype']}" if with_dtype else _describe(row)


def _box_in_patch(row: pd.Series) -> tuple[int, int, int, int]:
    y0, x0 = int(row["patch_y0"]), int(row["patch_x0"])
    return (row["ymin"] - y0, row["xmin"] - x0, row["ymax"] - y0, row["xmax"] - x0)


def gallery_figure(rows: Mapping[str, Sequence[Tile]], size: int) -> Figure:
    """Tiles in named rows (e.g. tissue-padded, black-padded, negatives), one patch a cell."""
    rows = {name: tiles for name, tiles in rows.items() if tiles}
    if not rows:
        return message_figure("Patch gallery", "no patches in this run")
    columns = max(len(tiles) for tiles in rows.values())
    fig = _figure(2.1 * columns + 0.8, 2.45 * len(rows) + 0.6)
    fig.suptitle(
        f"Patch gallery: a seeded sample of {size} x {size} patches "
        "(ROI box outlined; display contrast per patch)"
    )
    axes = fig.subplots(len(rows), columns, squeeze=False)
    for ax_row, (name, tiles) in zip(axes, rows.items(), strict=True):
        for ax, tile in zip(ax_row, [*tiles, *[None] * (columns - len(tiles))], strict=True):
            ax.set_xticks([])
            ax.set_yticks([])
            if tile is None:
                ax.set_axis_off()
                continue
            side = len(tile.pixels)
            ax.imshow(tile.pixels, cmap="gray", vmin=0, vmax=1, extent=(0, side, side, 0))
            if tile.box is not None:
                _draw_box(ax, tile.box, "yellow", linewidth=0.8, linestyle=":")
            ax.set_title(tile.caption, fontsize=8)
        ax_row[0].set_ylabel(f"{name}\n({len(tiles)})", fontsize=9, fontweight="bold")
    return fig


def _headers(paths: pd.Series) -> dict[str, ImageHeader]:
    """anon_dicom_path -> header (no pixels read), for the distinct images in `paths`."""
    return {anon: read_header(local) for anon, local in paths.items()}


# ---- images with their boxes ----------------------------------------------------------------


def _crop(pixels: np.ndarray, window: Sequence[int]) -> np.ndarray:
    y0, x0, y1, x1 = window
    return pixels[y0:y1, x0:x1]


def _show_image(
    ax: Axes,
    pixels: np.ndarray,
    window: Sequence[int] | None = None,
    limits: tuple[float, float] | None = None,
) -> None:
    """Tissue-bright `pixels` in image coordinates (pixel (y, x) covers [x, x + 1) x [y, y + 1)),
    cropped to `window` (ymin, xmin, ymax, xmax); contrast `limits`, else the shown area's."""
    y0, x0, y1, x1 = window or (0, 0, *pixels.shape)
    shown = _crop(pixels, (y0, x0, y1, x1))
    low, high = limits or display_range(shown)
    ax.imshow(scaled(shown, low, high), cmap="gray", vmin=0, vmax=1, extent=(x0, x1, y1, y0))
    ax.set_xlabel("column (pixels)")
    ax.set_ylabel("row (pixels)")


def read_frames(path: str, frames: Iterable[int]) -> tuple[dict[int, np.ndarray], ImageHeader]:
    """Frames of one image, each read alone (ImageReader.frame), tissue bright; its header."""
    with ImageReader(path) as reader:
        return {i: tissue_bright(reader.frame(i), reader.header) for i in frames}, reader.header


def _box(row: pd.Series) -> tuple[int, int, int, int]:
    return int(row["ymin"]), int(row["xmin"]), int(row["ymax"]), int(row["xmax"])


def _roi_flags(row: pd.Series) -> str:
    flags = [
        ("clipped", bool(row["clipped"])),
        (f"near-dup of {row['near_duplicate_of']}", pd.notna(row["near_duplicate_of"])),
        ("suspect flip", bool(row["suspect_flip"])),
    ]
    names = [name for name, on in flags if on]
    return f" ({', '.join(names)})" if names else ""


def _photometric(header: ImageHeader) -> str:
    inverted = header.photometric_interpretation == "MONOCHROME1"
    return header.photometric_interpretation + (" shown inverted" if inverted else "")


def overlay_2d_figure(image: np.ndarray, header: ImageHeader, rois: pd.DataFrame) -> Figure:
    """One 2D image (tissue bright) with all its accepted ROI boxes, numbered and flagged."""
    fig = _figure(7, 8)
    ax = fig.subplots()
    first = rois.iloc[0]
    fig.suptitle(
        f"{_describe(first)} image with its {len(rois)} accepted ROIs\n"
        f"exam {first['acc_anon']}, {header.rows} x {header.columns} pixels, "
        f"{_photometric(header)}"
    )
    _show_image(ax, image)
    for _, row in rois.iterrows():
        box = _box(row)
        _draw_box(ax, box, BOX_COLOR, linewidth=1.5)
        ax.annotate(
            f"ROI {row['roi_index']}{_roi_flags(row)}",
            (box[1], box[0]),
            xytext=(0, 3),
            textcoords="offset points",
            color=BOX_COLOR,
            fontsize=9,
            fontweight="bold",
        )
    return fig


def dbt_overlay_figure(
    frames: Mapping[int, np.ndarray], header: ImageHeader, roi: pd.Series
) -> Figure:
    """One DBT ROI: the whole middle frame shown, then the box zoomed on every frame shown
    (one contrast for all, from the middle frame's zoomed area)."""
    listed = sorted(set(roi["frames"]))
    shown = sorted(frames)
    nrows = math.ceil((len(shown) + 1) / 4)
    ncols = math.ceil((len(shown) + 1) / nrows)
    fig = _figure(3.4 * ncols, 3.6 * nrows + 0.6)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    fig.suptitle(
        f"{_describe(roi)} ROI {roi['roi_index']} (exam {roi['acc_anon']}), {_photometric(header)}"
        f": listed on {len(listed)} of the volume's {header.number_of_frames} frames "
        f"({listed[0]}-{listed[-1]}), {len(shown)} shown"
    )
    box = _box(roi)
    zoom = context_window(box, header.rows, header.columns)
    middle = shown[len(shown) // 2]
    _show_image(axes[0], frames[middle])
    _draw_box(axes[0], box, BOX_COLOR, linewidth=1.5)
    _draw_box(axes[0], zoom, "yellow", linewidth=1, linestyle="--")
    axes[0].set_title(f"frame {middle}, whole (dashed: zoomed area)", fontsize=9)
    limits = display_range(_crop(frames[middle], zoom))
    for ax, frame in zip(axes[1:], shown, strict=False):
        _show_image(ax, frames[frame], zoom, limits)
        _draw_box(ax, box, BOX_COLOR, linewidth=1.5)
        ax.set_title(f"frame {frame}, zoomed", fontsize=9)
    for ax in axes[len(shown) + 1 :]:
        ax.set_axis_off()
    return fig


def suspect_flip_figure(cases: Sequence[tuple[np.ndarray, pd.Series]], total: int) -> Figure:
    """Suspect flips: each image with the ROI box used (solid) and its x-mirror (dashed)."""
    if not cases:
        return message_figure("Suspect flips", "no suspect flips in this run")
    fig = _figure(max(4.6 * len(cases), 6), 6.6)
    fig.suptitle(
        f"Suspect flips: ROI on background, a mirror of it on tissue\n"
        f"suspect ROIs: {total}, shown: {len(cases)}"
    )
    axes = fig.subplots(1, len(cases), squeeze=False).ravel()
    for ax, (image, roi) in zip(axes, cases, strict=True):
        box = _box(roi)
        fixed = bool(roi["flip_fixed"])
        _show_image(ax, image)
        _draw_box(
            ax,
            box,
            BOX_COLOR,
            linewidth=1.5,
            label="box used (fixed: mirrored)" if fixed else "box as listed (used)",
        )
        mirror = Mirror(roi["mirror"])
        _draw_box(
            ax,
            mirror.apply(box, int(roi["rows"]), int(roi["columns"])),
            MIRROR_COLOR,
            linewidth=1.5,
            linestyle="--",
            label="box as listed" if fixed else f"{mirror}-mirror",
        )
        ax.set_title(
            f"{_describe(roi)} ROI {roi['roi_index']}\ntissue in box "
            f"{roi['box_tissue']:.0%}, in mirror {roi['mirror_tissue']:.0%}",
            fontsize=9,
        )
        ax.legend(loc="lower center", fontsize=8)
    return fig


# ---- the wrong-side check, measured ------------------------------------------------------

EVALUATION_GROUPS = {
    "not moved": ("0.6", "o"),
    "moved to PNG space, on the breast": ("#f0a020", "s"),
    "moved to PNG space, off the breast": (BOX_COLOR, "^"),
}


def _evaluation_group(box: pd.Series) -> str:
    if not box["transformed"]:
        return "not moved"
    where = "off" if box["off_breast"] else "on"
    return f"moved to PNG space, {where} the breast"


def flip_evaluation_figure(
    boxes: pd.DataFrame, scores: Mapping[str, Any], box_max: float, mirror_min: float
) -> Figure:
    """The evaluation set's boxes in the check's two measures, and the recall and
    false-positive rates of the check and of coordinate_space auto."""
    fig = _figure(13, 5.2)
    left, right = fig.subplots(1, 2, width_ratios=[1, 1.2])
    groups = boxes.apply(_evaluation_group, axis=1)
    for name, (color, marker) in EVALUATION_GROUPS.items():
        part = boxes[groups == name]
        left.scatter(
            part["box_tissue"],
            part["mirror_tissue"],
            s=14,
            c=color,
            marker=marker,
            alpha=0.7,
            label=f"{name} ({len(part)})",
        )
    left.axvline(box_max, color="0.3", linestyle="--", linewidth=1)
    left.axhline(mirror_min, color="0.3", linestyle="--", linewidth=1)
    left.fill_between([-0.02, box_max], mirror_min, 1.02, color=BOX_COLOR, alpha=0.08)
    left.set(xlim=(-0.02, 1.02), ylim=(-0.02, 1.02))
    left.set_xlabel("tissue share of the box as listed")
    left.set_ylabel("tissue share of its mirror compared")
    left.set_title("Each box of the evaluation set (shaded: flagged)")
    left.legend(loc="lower right", fontsize=8)
    measures = {
        "recall, moved off the breast": ("check_recall_off_breast", "auto_recall_off_breast"),
        "recall, every moved box": ("check_recall_all_transformed", "auto_recall_all_transformed"),
        "false positives": ("check_false_positive_rate", "auto_false_positive_rate"),
    }
    positions = np.arange(len(measures))
    for offset, (label, which) in zip(
        (-0.2, 0.2), (("wrong-side check", 0), ("coordinate_space: auto", 1)), strict=True
    ):
        values = [scores[keys[which]] or 0.0 for keys in measures.values()]
        bars = right.bar(positions + offset, values, width=0.38, label=label[0:])
        right.bar_label(bars, [f"{value:.1%}" for value in values], padding=2, fontsize=8)
    right.set_xticks(positions, list(measures), fontsize=9)
    right.set_ylim(0, 1.12)
    right.set_ylabel("share of boxes")
    right.legend(loc="upper right", fontsize=8)
    right.set_title(
        f"{scores['images']} images, {scores['boxes']} boxes, "
        f"{scores['transformed_boxes']} moved ({scores['transformed_off_breast']} off the breast)"
    )
    fig.suptitle("Wrong-side check and coordinate_space auto on synthetic images with known truth")
    return fig


# ---- the rules' entry point ---------------------------------------------------------------


ROI_COLUMNS = ACCEPTED_COLUMNS
MANIFEST_COLUMNS = ["shard", *INFO_COLUMNS]
FILTERED_COLUMNS = ["anon_dicom_path", "dicom_path", *COUNT_COLUMNS]


class RunTables:
    """The run's tables, each read (only the columns figures use) when first needed.

    `inputs`: table name (summary, filtered, rois, rejected, manifest) -> path.
    """

    def __init__(self, inputs: Mapping[str, str]) -> None:
        self.inputs = inputs

    @property
    def results(self) -> Path:
        """The results folder: the manifest's, which its `shard` paths are relative to."""
        return Path(self.inputs["manifest"]).parent

    @cached_property
    def summary(self) -> dict:
        with open(self.inputs["summary"]) as file:
            return json.load(file)

    @cached_property
    def filtered(self) -> pd.DataFrame:
        """The filtered table's columns figures use; a count column the user's table lacks
        (only the filter's own columns are required) is read as all missing."""
        present = set(pq.read_schema(self.inputs["filtered"]).names)
        table = read_columns(self.inputs["filtered"], [c for c in FILTERED_COLUMNS if c in present])
        return table.reindex(columns=FILTERED_COLUMNS)

    @cached_property
    def rois(self) -> pd.DataFrame:
        return read_columns(self.inputs["rois"], ROI_COLUMNS)

    @cached_property
    def rejected(self) -> pd.DataFrame:
        return read_columns(self.inputs["rejected"], ["reason", "n_rois", "stage"])

    @cached_property
    def manifest(self) -> pd.DataFrame:
        return read_columns(self.inputs["manifest"], MANIFEST_COLUMNS)

    @cached_property
    def extracted_rois(self) -> pd.DataFrame:
        """The accepted ROIs of images extraction read (figure_data.extracted_rois)."""
        return extracted_rois(self.rois, self.manifest)


def plot_patch_gallery(run: RunTables) -> Figure:
    """The gallery of a seeded sample of ROI patches (every padding) and negatives."""
    chosen, negatives = gallery_rows(run.manifest)
    both = pd.concat([chosen, negatives])
    local = run.filtered.set_index("anon_dicom_path")["dicom_path"]
    headers = _headers(local[both["anon_dicom_path"].unique()])
    pixels = dict(zip(both.index, displayed_patches(both, run.results, headers), strict=True))
    mixed = "dtype" in both and both["dtype"].nunique() > 1
    rows: dict[str, list[Tile]] = {}
    for mode, part in chosen.groupby("padding", sort=False):
        rows[f"{mode}-padded ROI"] = [
            Tile(pixels[label], _roi_caption(row, mixed), _box_in_patch(row))
            for label, row in part.iterrows()
        ]
    rows["negatives"] = [
        Tile(pixels[label], _patch_caption(row, mixed)) for label, row in negatives.iterrows()
    ]
    size = int(run.manifest["patch_size"].max()) if len(run.manifest) else 0
    return gallery_figure(rows, size)


def plot_overlay_2d(run: RunTables) -> Figure:
    """The 2D image with the most accepted ROIs (figure_data.overlay_2d_rois), boxes drawn."""
    image_rois = overlay_2d_rois(run.extracted_rois)
    if image_rois.empty:
        return message_figure("2D image with its ROIs", "no accepted 2D ROIs in this run")
    frames, header = read_frames(image_rois["dicom_path"].iloc[0], [0])
    return overlay_2d_figure(frames[0], header, image_rois)


def plot_overlay_dbt(run: RunTables) -> Figure:
    """The DBT ROI listing the most frames, on its frames shown (figure_data.overlay_dbt_roi)."""
    chosen = overlay_dbt_roi(run.extracted_rois)
    if chosen is None:
        return message_figure("DBT ROI across its frames", "no accepted DBT ROIs in this run")
    roi, shown = chosen
    return dbt_overlay_figure(*read_frames(roi["dicom_path"], shown), roi)


def plot_suspect_flips(run: RunTables) -> Figure:
    """A seeded sample of suspect flips (figure_data.suspect_flip_sample), each on its image."""
    shown, total = suspect_flip_sample(run.extracted_rois)
    cases = [(read_frames(row["dicom_path"], [0])[0][0], row) for _, row in shown.iterrows()]
    return suspect_flip_figure(cases, total)


PLOTS: dict[str, Callable[[RunTables], Figure]] = {
    "funnel": lambda run: funnel_figure(run.summary["funnel"]),
    "rejections": lambda run: rejections_figure(run.rejected, run.rois),
    "rois_per_image": lambda run: rois_per_image_figure(run.rois),
    "roi_sizes": lambda run: roi_sizes_figure(run.rois),
    "dbt_frames": lambda run: dbt_frames_figure(run.rois),
    "roi_locations": lambda run: roi_locations_figure(run.rois),
    "counts": lambda run: counts_figure(run.filtered),
    "balance": lambda run: balance_figure(run.manifest),
    "patch_gallery": plot_patch_gallery,
    "overlay_2d": plot_overlay_2d,
    "overlay_dbt": plot_overlay_dbt,
    "suspect_flips": plot_suspect_flips,
}
"""Figure name (its output name and PNG stem) -> how to draw it from the run's tables."""


def save_png(fig: Figure, path: str | Path) -> None:
    """Write `fig` as a PNG, atomically."""
    with atomic_output(path) as temporary:
        fig.savefig(temporary, format="png", dpi=DPI)


def write_figures(inputs: Mapping[str, str], outputs: Mapping[str, str]) -> None:
    """Draw each output (named as in PLOTS) from the run's tables (RunTables `inputs`)."""
    run = RunTables(inputs)
    for name, path in outputs.items():
        save_png(PLOTS[name](run), path)
        log.info("wrote %s", path)
