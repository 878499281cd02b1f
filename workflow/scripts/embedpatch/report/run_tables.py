"""The run's tables as the figures read them, and what each figure of pixels shows.

RunTables reads a table (only the columns figures use) when a figure first needs it, and
keeps the selections of the figures of pixels (figure_data: seeded samples, the busiest
image), so that the figure cache keys a figure on exactly what its drawing shows. No
matplotlib and no DICOM reader here.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from embedpatch.patches.shards import INFO_COLUMNS
from embedpatch.report.figure_data import (
    COUNT_COLUMNS,
    extracted_rois,
    gallery_rows,
    overlay_2d_rois,
    overlay_dbt_roi,
    suspect_flip_sample,
)
from embedpatch.report.summary import REJECTED_COLUMNS, funnel_counts, read_columns
from embedpatch.rois.columns import ACCEPTED_COLUMNS

ROI_COLUMNS = ACCEPTED_COLUMNS
MANIFEST_COLUMNS = ["shard", *INFO_COLUMNS]
FILTERED_COLUMNS = ["anon_dicom_path", "dicom_path", *COUNT_COLUMNS]
FUNNEL_TABLES = ("filter_summary", "filtered", "rois", "rejected", "manifest")
"""The inputs the funnel is counted from (summary.funnel_counts, as for summary.json)."""


class RunTables:
    """The run's tables, each read when first needed, and the figures' selections.

    `inputs`: table name (filter_summary, filtered, rois, rejected, manifest) -> path.
    """

    def __init__(self, inputs: Mapping[str, str]) -> None:
        self.inputs = inputs

    @property
    def results(self) -> Path:
        """The results folder: the manifest's, which its `shard` paths are relative to."""
        return Path(self.inputs["manifest"]).parent

    @cached_property
    def funnel(self) -> dict[str, dict[str, Any]]:
        """The funnel counts, as summary.json has them, from the tables read here."""
        with open(self.inputs["filter_summary"]) as file:
            rows_in = json.load(file)["rows_in"]
        return funnel_counts(rows_in, self.filtered, self.rois, self.rejected, self.manifest)

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
        return read_columns(self.inputs["rejected"], ["reason", *REJECTED_COLUMNS])

    @cached_property
    def manifest(self) -> pd.DataFrame:
        return read_columns(self.inputs["manifest"], MANIFEST_COLUMNS)

    @cached_property
    def extracted_rois(self) -> pd.DataFrame:
        """The accepted ROIs of images extraction read (figure_data.extracted_rois)."""
        return extracted_rois(self.rois, self.manifest)

    # ---- what the figures of pixels show (image_figures draws exactly these) ----

    @cached_property
    def gallery(self) -> tuple[pd.DataFrame, pd.DataFrame]:
        """The gallery's ROI patch rows and negative rows (figure_data.gallery_rows)."""
        return gallery_rows(self.manifest)

    @cached_property
    def gallery_images(self) -> pd.Series:
        """anon_dicom_path -> image location, for the gallery's images (their headers say
        how to show the patches)."""
        chosen, negatives = self.gallery
        shown = pd.concat([chosen, negatives])["anon_dicom_path"].unique()
        return self.filtered.set_index("anon_dicom_path")["dicom_path"][shown]

    @cached_property
    def overlay_2d(self) -> pd.DataFrame:
        return overlay_2d_rois(self.extracted_rois)

    @cached_property
    def overlay_dbt(self) -> tuple[pd.Series, list[int]] | None:
        return overlay_dbt_roi(self.extracted_rois)

    @cached_property
    def suspect_flips(self) -> tuple[pd.DataFrame, int]:
        return suspect_flip_sample(self.extracted_rois)

    def shown(self, figure: str) -> tuple[str, list[str]]:
        """What figure of pixels `figure` shows, as JSON text (its rows and numbers), and
        the images it reads pixels or headers of."""
        if figure == "patch_gallery":
            parts: list[Any] = [*self.gallery]
            images = list(self.gallery_images)
        elif figure == "overlay_2d":
            parts, images = [self.overlay_2d], list(self.overlay_2d["dicom_path"].unique())
        elif figure == "overlay_dbt":
            parts = list(self.overlay_dbt or [None])
            images = [] if self.overlay_dbt is None else [self.overlay_dbt[0]["dicom_path"]]
        elif figure == "suspect_flips":
            parts, images = [*self.suspect_flips], list(self.suspect_flips[0]["dicom_path"])
        else:
            raise KeyError(f"{figure}: not a figure of pixels")
        return json.dumps([_as_json(part) for part in parts]), [str(image) for image in images]


PIXEL_FIGURES = ("patch_gallery", "overlay_2d", "overlay_dbt", "suspect_flips")
"""The figures of pixels (image_figures), each described by RunTables.shown."""


def _as_json(part: object) -> str:
    """A table's rows (not their positions in the run's tables, which new exams shift), a
    row's cells, or a number, as JSON."""
    if isinstance(part, pd.DataFrame):
        return part.to_json(orient="records", default_handler=str)
    if isinstance(part, pd.Series):
        return part.to_json(default_handler=str)
    return json.dumps(part, default=str)
