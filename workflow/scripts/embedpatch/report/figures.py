"""The rules' figures: which figure is drawn from which of the run's tables, and
`write_figures`, what the figure rules call (through embedpatch.report.figure_cache).

RunTables (run_tables) reads only the tables a figure needs (and only their needed
columns). The figures of tables are in table_figures; the figures of pixels
(image_figures: a bounded, seeded sample of patches and of images, one frame at a time)
are imported only when one is drawn, so a rule drawing tables alone imports no DICOM
reader."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping

from matplotlib.figure import Figure

from embedpatch.report.drawing import save_png
from embedpatch.report.run_tables import RunTables
from embedpatch.report.table_figures import (
    balance_figure,
    counts_figure,
    dbt_frames_figure,
    funnel_figure,
    rejections_figure,
    roi_locations_figure,
    roi_sizes_figure,
    rois_per_image_figure,
)

log = logging.getLogger(__name__)


# ---- the rules' entry point ---------------------------------------------------------------


def _pixel_figure(function: str) -> Callable[[RunTables], Figure]:
    """image_figures' `function`, imported when its figure is drawn (it brings the DICOM
    and HDF5 readers, which a rule drawing tables alone does not need)."""

    def draw(run: RunTables) -> Figure:
        from embedpatch.report import image_figures

        return getattr(image_figures, function)(run)

    return draw


PLOTS: dict[str, Callable[[RunTables], Figure]] = {
    "funnel": lambda run: funnel_figure(run.funnel),
    "rejections": lambda run: rejections_figure(run.rejected, run.rois),
    "rois_per_image": lambda run: rois_per_image_figure(run.rois),
    "roi_sizes": lambda run: roi_sizes_figure(run.rois),
    "dbt_frames": lambda run: dbt_frames_figure(run.rois),
    "roi_locations": lambda run: roi_locations_figure(run.rois),
    "counts": lambda run: counts_figure(run.filtered),
    "balance": lambda run: balance_figure(run.manifest),
    "patch_gallery": _pixel_figure("plot_patch_gallery"),
    "overlay_2d": _pixel_figure("plot_overlay_2d"),
    "overlay_dbt": _pixel_figure("plot_overlay_dbt"),
    "suspect_flips": _pixel_figure("plot_suspect_flips"),
}
"""Figure name (its output name and PNG stem) -> how to draw it from the run's tables."""


def write_figures(run: RunTables, outputs: Mapping[str, str]) -> None:
    """Draw each output (figure name as in PLOTS -> PNG path) from the run's tables."""
    for name, path in outputs.items():
        save_png(PLOTS[name](run), path)
        log.info("wrote %s", path)
