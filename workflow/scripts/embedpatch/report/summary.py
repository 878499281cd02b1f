"""The run's machine-readable summary: the funnel counts and every stage's own summary.

The funnel follows the data from metadata rows to patches. Each stage has a `total`
and, where the tables say, `by_image_type` (2D, cview, 3D). Counts come from the
tables themselves (filtered.parquet, rois.parquet, rejected.parquet, manifest.parquet),
so a test can check them against the files, and the funnel figure plots exactly these.
ROIs are counted in declared ROIs: a whole-row rejection counts its `n_rois`.
"""

from __future__ import annotations

import json
import logging
from typing import Any

import pandas as pd

from embedpatch.io.atomic import write_json
from embedpatch.vocab import IMAGE_TYPES

log = logging.getLogger(__name__)

FUNNEL_STAGES = {
    "rows_in": "metadata rows read",
    "rows_kept": "rows kept by the filter",
    "rois_declared": "ROIs declared",
    "rois_accepted": "ROIs accepted by validation",
    "rois_rejected": "ROIs rejected (validation + extraction)",
    "rois_with_patches": "ROIs with patches",
    "patches": "patches written",
    "patches_roi": "ROI patches",
    "patches_negative": "negative patches",
}
"""Funnel stage -> what it counts, in funnel order."""

MANIFEST_COLUMNS = ["anon_dicom_path", "FinalImageType", "roi_index", "label"]
REJECTED_COLUMNS = ["FinalImageType", "n_rois", "stage"]
ROI_KEY = ["anon_dicom_path", "roi_index"]


def read_columns(path: str, columns: list[str]) -> pd.DataFrame:
    """Some columns of a pipeline Parquet table, integers kept exact (nullable dtypes)."""
    return pd.read_parquet(path, columns=columns, dtype_backend="numpy_nullable")


def _stage(counts: pd.Series) -> dict[str, Any]:
    """A stage's total and per-image-type counts from counts indexed by image type."""
    by_type = {kind: int(counts.get(kind, 0)) for kind in IMAGE_TYPES}
    return {"total": int(counts.sum()), "by_image_type": by_type}


def _per_type(table: pd.DataFrame, weights: str | None = None) -> pd.Series:
    """Rows (or the sum of `weights`) per FinalImageType."""
    if weights is None:
        return table["FinalImageType"].value_counts()
    return table.groupby("FinalImageType")[weights].sum()


def funnel_counts(
    rows_in: int,
    filtered: pd.DataFrame,
    rois: pd.DataFrame,
    rejected: pd.DataFrame,
    manifest: pd.DataFrame,
) -> dict[str, dict[str, Any]]:
    """Every FUNNEL_STAGES count; the tables need FinalImageType and the columns used here.

    `filtered`: the kept rows; `rois`: the accepted ROIs; `rejected`: both stages'
    rejections with n_rois and stage; `manifest`: one row per patch with its
    anon_dicom_path, roi_index and label.
    """
    validation = rejected[rejected["stage"] == "validate"]
    roi_patches = manifest[manifest["label"] == "roi"]
    counts = {
        "rows_kept": _per_type(filtered),
        "rois_declared": _per_type(rois).add(_per_type(validation, "n_rois"), fill_value=0),
        "rois_accepted": _per_type(rois),
        "rois_rejected": _per_type(rejected, "n_rois"),
        "rois_with_patches": _per_type(roi_patches.drop_duplicates(ROI_KEY)),
        "patches": _per_type(manifest),
        "patches_roi": _per_type(roi_patches),
        "patches_negative": _per_type(manifest[manifest["label"] == "negative"]),
    }
    return {"rows_in": {"total": int(rows_in)}} | {
        stage: _stage(count) for stage, count in counts.items()
    }


def _json(path: str) -> dict:
    with open(path) as file:
        return json.load(file)


def build_summary(
    filter_summary_path: str,
    roi_summary_path: str,
    patches_summary_path: str,
    filtered_path: str,
    rois_path: str,
    rejected_path: str,
    manifest_path: str,
) -> dict[str, Any]:
    """The funnel and the three stage summaries (filter, rois, patches) in one mapping."""
    filter_summary = _json(filter_summary_path)
    funnel = funnel_counts(
        filter_summary["rows_in"],
        read_columns(filtered_path, ["FinalImageType"]),
        read_columns(rois_path, ["FinalImageType"]),
        read_columns(rejected_path, REJECTED_COLUMNS),
        read_columns(manifest_path, MANIFEST_COLUMNS),
    )
    stages = {
        "filter": filter_summary,
        "rois": _json(roi_summary_path),
        "patches": _json(patches_summary_path),
    }
    fetched = {name: stage.get("object_store") for name, stage in stages.items()}
    return {"funnel": funnel, **stages, "object_store": fetched}


def write_summary(summary_path: str, **paths: str) -> dict[str, Any]:
    """Write build_summary(**paths) as JSON to `summary_path`."""
    summary = build_summary(**paths)
    write_json(summary_path, summary)
    log.info("funnel %s", json.dumps(summary["funnel"]))
    return summary
