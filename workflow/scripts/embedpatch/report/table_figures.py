"""Figures drawn from the run's tables alone (rules plot_rois and plot_funnel): each
function takes tables and returns a matplotlib Figure."""

from __future__ import annotations

import itertools
from collections.abc import Mapping

import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from matplotlib.ticker import MaxNLocator

from embedpatch.reasons import RoiWarning
from embedpatch.report.drawing import (
    FUNNEL_PANELS,
    STAGE_COLORS,
    STAGE_LABELS,
    TYPE_COLORS,
    TYPE_LABELS,
    WARNING_LABELS,
    count_axis,
    empty_message,
    new_figure,
    type_legend,
)
from embedpatch.report.figure_data import (
    BALANCE_COLUMNS,
    COUNT_COLUMNS,
    LABELS,
    LOCATION_POINTS,
    MISSING,
    SEED,
    dbt_frame_stats,
    image_types_in,
    label_counts,
    negative_sources,
    normalized_centres,
    ordered_values,
    reason_counts,
    roi_size_groups,
    rois_per_image,
    top_counts,
    warning_counts,
)
from embedpatch.report.summary import FUNNEL_STAGES
from embedpatch.vocab import DBT, IMAGE_TYPES

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
    fig = new_figure(10, 1.0 + 0.55 * sum(heights))
    axes = fig.subplots(len(FUNNEL_PANELS), 1, gridspec_kw={"height_ratios": heights})
    for ax, (unit, stages) in zip(axes, FUNNEL_PANELS.items(), strict=True):
        for y, stage in enumerate(stages):
            _funnel_bar(ax, y, funnel[stage])
        ax.set_yticks(range(len(stages)), [FUNNEL_STAGES[stage] for stage in stages])
        ax.invert_yaxis()
        count_axis(ax, [funnel[stage]["total"] for stage in stages], 1.7)
        ax.set_title(unit[0].upper() + unit[1:], loc="left", fontweight="bold")
        ax.set_xlabel(unit)
    fig.suptitle("Pipeline funnel: metadata rows -> ROIs -> patches")
    type_legend(fig)
    return fig


def rejections_figure(rejected: pd.DataFrame, rois: pd.DataFrame) -> Figure:
    """Refused ROIs per reason and stage, and the warnings on accepted ROIs."""
    counts = reason_counts(rejected)
    warnings = warning_counts(rois)
    fig = new_figure(12, 1.5 + 0.3 * len(counts))
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
    count_axis(left, start, 1.15)
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
    count_axis(right, warnings, 1.4)
    right.set_xlabel("accepted ROIs flagged (kept)")
    right.set_title(f"Warnings on the {len(rois):,} accepted ROIs")
    fig.suptitle("Why ROIs were refused, and what was flagged on those kept")
    return fig


# ---- ROI geometry ---------------------------------------------------------------------------


def rois_per_image_figure(rois: pd.DataFrame) -> Figure:
    """How many accepted ROIs each image has, per image type."""
    fig = new_figure(8, 4.5)
    ax = fig.subplots()
    table = rois_per_image(rois)
    images = int(table.to_numpy().sum())
    fig.suptitle(f"Accepted ROIs per image ({images:,} images with at least one ROI)")
    if table.empty:
        empty_message(ax, "no accepted ROIs")
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
    fig = new_figure(11, 4.2)
    axes = fig.subplots(1, 2)
    fig.suptitle(f"Accepted ROI sizes ({len(rois):,} ROIs; pixel spacing differs by image type)")
    for ax, (name, low, high) in zip(
        axes, [("height", "ymin", "ymax"), ("width", "xmin", "xmax")], strict=True
    ):
        ax.set_xlabel(f"ROI {name} (pixels)")
        ax.set_ylabel("ROIs")
        ax.set_title(f"ROI {name}")
        if rois.empty:
            empty_message(ax, "no accepted ROIs")
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
    fig = new_figure(11, 4.2)
    span_ax, depth_ax = fig.subplots(1, 2)
    fig.suptitle(f"Accepted DBT ROIs across the volume's frames ({len(dbt):,} ROIs)")
    for ax in (span_ax, depth_ax):
        ax.set_ylabel("DBT ROIs")
    span_ax.set_xlabel("frame span: last - first listed frame + 1")
    depth_ax.set_xlabel("middle listed frame / (frames in the volume - 1)")
    depth_ax.set_title("depth of the ROI: 0 = first frame, 1 = last")
    if dbt.empty:
        span_ax.set_title("frames each ROI spans")
        empty_message(span_ax, "no accepted DBT ROIs")
        empty_message(depth_ax, "no accepted DBT ROIs")
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
    fig = new_figure(3.6 * len(side_list) + 0.5, 3.6 * len(view_list) + 1.0)
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
    type_legend(fig, image_types_in(shown) or IMAGE_TYPES)
    return fig


# ---- the filtered table ---------------------------------------------------------------------


def counts_figure(filtered: pd.DataFrame) -> Figure:
    """Image rows kept by the filter, by image type, view, laterality and manufacturer."""
    fig = new_figure(12, 6.5)
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
        count_axis(ax, counts, 1.2)
        ax.set_title(f"by {name} ({column})")
        ax.set_xlabel("image rows")
    fig.suptitle(f"Image rows kept by the filter: {len(filtered):,}")
    return fig


LABEL_COLORS = {"roi": "#d62728", "negative": "#7f7f7f"}


def balance_figure(manifest: pd.DataFrame) -> Figure:
    """ROI (positive) and negative patches by image type, view and laterality, and the
    images negatives came from (figure_data.label_counts, negative_sources)."""
    fig = new_figure(12, 6.5)
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
        count_axis(ax, counts.to_numpy().ravel(), 1.25)
        ax.set_title(f"patches by {name}")
    sources = negative_sources(manifest)
    bars = axes[3].barh(list(sources), list(sources.values()), color=LABEL_COLORS["negative"])
    axes[3].bar_label(bars, [f"{n:,}" for n in sources.values()], padding=3)
    axes[3].invert_yaxis()
    count_axis(axes[3], sources.values(), 1.25)
    axes[3].set_title("images giving negative patches")
    handles = [Patch(color=LABEL_COLORS[label], label=f"{label} patches") for label in LABELS]
    fig.legend(handles=handles, loc="outside lower center", ncols=len(LABELS))
    roi, negative = ((manifest["label"] == label).sum() for label in LABELS)
    ratio = f", {negative / roi:.2f} negatives per ROI patch" if roi else ""
    fig.suptitle(f"Patches: {roi:,} ROI, {negative:,} negative{ratio}")
    return fig
