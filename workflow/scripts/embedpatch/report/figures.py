"""The rules' figures: which figure is drawn from which of the run's tables, and
`write_figures`, what the figure rules call (through embedpatch.report.figure_cache).

RunTables reads only the tables a figure needs (and only their needed columns). The
figures of tables are in table_figures; the figures of pixels (image_figures: a bounded,
seeded sample of patches and of images, one frame at a time) are imported only when one
is drawn, so a rule drawing tables alone imports no DICOM reader."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from functools import cached_property
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
from matplotlib.figure import Figure

from embedpatch.patches.shards import INFO_COLUMNS
from embedpatch.report.drawing import save_png
from embedpatch.report.figure_data import COUNT_COLUMNS, extracted_rois
from embedpatch.report.summary import read_columns
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
from embedpatch.rois.columns import ACCEPTED_COLUMNS

log = logging.getLogger(__name__)


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


def _pixel_figure(function: str) -> Callable[[RunTables], Figure]:
    """image_figures' `function`, imported when its figure is drawn (it brings the DICOM
    and HDF5 readers, which a rule drawing tables alone does not need)."""

    def draw(run: RunTables) -> Figure:
        from embedpatch.report import image_figures

        return getattr(image_figures, function)(run)

    return draw


PLOTS: dict[str, Callable[[RunTables], Figure]] = {
    "funnel": lambda run: funnel_figure(run.summary["funnel"]),
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


def write_figures(inputs: Mapping[str, str], outputs: Mapping[str, str]) -> None:
    """Draw each output (named as in PLOTS) from the run's tables (RunTables `inputs`)."""
    run = RunTables(inputs)
    for name, path in outputs.items():
        save_png(PLOTS[name](run), path)
        log.info("wrote %s", path)
