"""Figures of pixels (rule plot_images): a seeded sample of patches read from the shards
and of images read one frame at a time, with their boxes. Each `plot_*` function draws
one figure from what the run's tables select (run_tables.RunTables: the samples and the
images chosen, which the figure cache keys them on).

Display conventions: tissue bright (MONOCHROME1 pixels inverted), contrast stretched
per image or patch over the pixels that came from the image (padding stays black);
boxes are (ymin, xmin, ymax, xmax), max exclusive, drawn on pixel edges.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import hdf5plugin  # noqa: F401  registers the shards' compression filters with h5py
import numpy as np
import pandas as pd
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from embedpatch.dicom import ImageHeader, ImageReader, read_header
from embedpatch.geometry import Mirror
from embedpatch.report.drawing import (
    BOX_COLOR,
    MIRROR_COLOR,
    describe_image,
    draw_box,
    message_figure,
    new_figure,
)
from embedpatch.report.figure_data import (
    PANEL_PIXELS,
    content_mask,
    context_window,
    display_factor,
    display_range,
    patch_display,
    scaled,
    tissue_bright,
)

if TYPE_CHECKING:
    from embedpatch.report.run_tables import RunTables


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
    return f"{describe_image(row)}, {row['dtype']}" if with_dtype else describe_image(row)


def _box_in_patch(row: pd.Series) -> tuple[int, int, int, int]:
    y0, x0 = int(row["patch_y0"]), int(row["patch_x0"])
    return (row["ymin"] - y0, row["xmin"] - x0, row["ymax"] - y0, row["xmax"] - x0)


def gallery_figure(rows: Mapping[str, Sequence[Tile]], size: int) -> Figure:
    """Tiles in named rows (e.g. tissue-padded, black-padded, negatives), one patch a cell."""
    rows = {name: tiles for name, tiles in rows.items() if tiles}
    if not rows:
        return message_figure("Patch gallery", "no patches in this run")
    columns = max(len(tiles) for tiles in rows.values())
    fig = new_figure(2.1 * columns + 0.8, 2.45 * len(rows) + 0.6)
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
                draw_box(ax, tile.box, "yellow", linewidth=0.8, linestyle=":")
            ax.set_title(tile.caption, fontsize=8)
        ax_row[0].set_ylabel(f"{name}\n({len(tiles)})", fontsize=9, fontweight="bold")
    return fig


def _headers(paths: pd.Series) -> dict[str, ImageHeader]:
    """anon_dicom_path -> header (no pixels read), for the distinct images in `paths`."""
    return {anon: read_header(local) for anon, local in paths.items()}


# ---- images with their boxes ----------------------------------------------------------------


@dataclass(frozen=True)
class View:
    """Tissue-bright pixels of an image and the area (ymin, xmin, ymax, xmax, in image
    pixels) they cover: a window at full resolution, or the whole frame downsampled."""

    pixels: np.ndarray
    area: tuple[int, int, int, int]


def whole_view(reader: ImageReader, frame: int) -> View:
    """Frame `frame` downsampled for display (figure_data.display_factor; a JPEG 2000
    frame at reduced resolution, not decoded whole)."""
    header = reader.header
    factor = display_factor(header.rows, header.columns)
    pixels = tissue_bright(reader.downsampled(frame, factor), header)
    return View(pixels, (0, 0, pixels.shape[0] * factor, pixels.shape[1] * factor))


def window_view(reader: ImageReader, frame: int, window: Sequence[int]) -> View:
    """The window (ymin, xmin, ymax, xmax) of frame `frame`, read alone, every n-th pixel
    of it kept for a panel (figure_data.PANEL_PIXELS)."""
    y0, x0, y1, x1 = window
    factor = display_factor(y1 - y0, x1 - x0, PANEL_PIXELS)
    pixels = reader.region(frame, y0, y1, x0, x1)[::factor, ::factor]
    area = (y0, x0, y0 + pixels.shape[0] * factor, x0 + pixels.shape[1] * factor)
    return View(tissue_bright(pixels, reader.header), area)


def _show_image(ax: Axes, view: View, limits: tuple[float, float] | None = None) -> None:
    """`view` in image coordinates (pixel edges on the image's pixel edges); contrast
    `limits`, else the view's own."""
    low, high = limits or display_range(view.pixels)
    y0, x0, y1, x1 = view.area
    ax.imshow(scaled(view.pixels, low, high), cmap="gray", vmin=0, vmax=1, extent=(x0, x1, y1, y0))
    ax.set_xlabel("column (pixels)")
    ax.set_ylabel("row (pixels)")


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


def overlay_2d_figure(image: View, header: ImageHeader, rois: pd.DataFrame) -> Figure:
    """One 2D image (tissue bright) with all its accepted ROI boxes, numbered and flagged."""
    fig = new_figure(7, 8)
    ax = fig.subplots()
    first = rois.iloc[0]
    fig.suptitle(
        f"{describe_image(first)} image with its {len(rois)} accepted ROIs\n"
        f"exam {first['acc_anon']}, {header.rows} x {header.columns} pixels, "
        f"{_photometric(header)}"
    )
    _show_image(ax, image)
    for _, row in rois.iterrows():
        box = _box(row)
        draw_box(ax, box, BOX_COLOR, linewidth=1.5)
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
    middle_frame: View, zoomed: Mapping[int, View], header: ImageHeader, roi: pd.Series
) -> Figure:
    """One DBT ROI: the whole middle frame shown, then the box zoomed on every frame shown
    (`zoomed`: frame -> the same window; one contrast for all, the middle frame's)."""
    listed = sorted(set(roi["frames"]))
    shown = sorted(zoomed)
    nrows = math.ceil((len(shown) + 1) / 4)
    ncols = math.ceil((len(shown) + 1) / nrows)
    fig = new_figure(3.4 * ncols, 3.6 * nrows + 0.6)
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    fig.suptitle(
        f"{describe_image(roi)} ROI {roi['roi_index']} (exam {roi['acc_anon']}), "
        f"{_photometric(header)}: listed on {len(listed)} of the volume's "
        f"{header.number_of_frames} frames "
        f"({listed[0]}-{listed[-1]}), {len(shown)} shown"
    )
    box = _box(roi)
    middle = shown[len(shown) // 2]
    _show_image(axes[0], middle_frame)
    draw_box(axes[0], box, BOX_COLOR, linewidth=1.5)
    draw_box(axes[0], zoomed[middle].area, "yellow", linewidth=1, linestyle="--")
    axes[0].set_title(f"frame {middle}, whole (dashed: zoomed area)", fontsize=9)
    limits = display_range(zoomed[middle].pixels)
    for ax, frame in zip(axes[1:], shown, strict=False):
        _show_image(ax, zoomed[frame], limits)
        draw_box(ax, box, BOX_COLOR, linewidth=1.5)
        ax.set_title(f"frame {frame}, zoomed", fontsize=9)
    for ax in axes[len(shown) + 1 :]:
        ax.set_axis_off()
    return fig


def suspect_flip_figure(cases: Sequence[tuple[View, pd.Series]], total: int) -> Figure:
    """Suspect flips: each image with the ROI box used (solid) and its x-mirror (dashed)."""
    if not cases:
        return message_figure("Suspect flips", "no suspect flips in this run")
    fig = new_figure(max(4.6 * len(cases), 6), 6.6)
    fig.suptitle(
        f"Suspect flips: ROI on background, a mirror of it on tissue\n"
        f"suspect ROIs: {total}, shown: {len(cases)}"
    )
    axes = fig.subplots(1, len(cases), squeeze=False).ravel()
    for ax, (image, roi) in zip(axes, cases, strict=True):
        box = _box(roi)
        fixed = bool(roi["flip_fixed"])
        _show_image(ax, image)
        draw_box(
            ax,
            box,
            BOX_COLOR,
            linewidth=1.5,
            label="box used (fixed: mirrored)" if fixed else "box as listed (used)",
        )
        mirror = Mirror(roi["mirror"])
        draw_box(
            ax,
            mirror.apply(box, int(roi["rows"]), int(roi["columns"])),
            MIRROR_COLOR,
            linewidth=1.5,
            linestyle="--",
            label="box as listed" if fixed else f"{mirror}-mirror",
        )
        ax.set_title(
            f"{describe_image(roi)} ROI {roi['roi_index']}\ntissue in box "
            f"{roi['box_tissue']:.0%}, in mirror {roi['mirror_tissue']:.0%}",
            fontsize=9,
        )
        ax.legend(loc="lower center", fontsize=8)
    return fig


def plot_patch_gallery(run: RunTables) -> Figure:
    """The gallery of a seeded sample of ROI patches (every padding) and negatives."""
    chosen, negatives = run.gallery
    both = pd.concat([chosen, negatives])
    headers = _headers(run.gallery_images)
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
    size = int(both["patch_size"].max()) if len(both) else 0
    return gallery_figure(rows, size)


def plot_overlay_2d(run: RunTables) -> Figure:
    """The 2D image with the most accepted ROIs (figure_data.overlay_2d_rois), boxes drawn."""
    image_rois = run.overlay_2d
    if image_rois.empty:
        return message_figure("2D image with its ROIs", "no accepted 2D ROIs in this run")
    with ImageReader(image_rois["dicom_path"].iloc[0]) as reader:
        return overlay_2d_figure(whole_view(reader, 0), reader.header, image_rois)


def plot_overlay_dbt(run: RunTables) -> Figure:
    """The DBT ROI listing the most frames, on its frames shown (figure_data.overlay_dbt_roi)."""
    chosen = run.overlay_dbt
    if chosen is None:
        return message_figure("DBT ROI across its frames", "no accepted DBT ROIs in this run")
    roi, shown = chosen
    with ImageReader(roi["dicom_path"]) as reader:
        header = reader.header
        zoom = context_window(_box(roi), header.rows, header.columns)
        zoomed = {frame: window_view(reader, frame, zoom) for frame in shown}
        middle_frame = whole_view(reader, shown[len(shown) // 2])
    return dbt_overlay_figure(middle_frame, zoomed, header, roi)


def plot_suspect_flips(run: RunTables) -> Figure:
    """A seeded sample of suspect flips (figure_data.suspect_flip_sample), each on its image."""
    shown, total = run.suspect_flips
    cases = []
    for _, row in shown.iterrows():
        with ImageReader(row["dicom_path"]) as reader:
            cases.append((whole_view(reader, 0), row))
    return suspect_flip_figure(cases, total)
