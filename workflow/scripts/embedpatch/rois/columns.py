"""Stage 2's tables, by their columns: what it reads from the filtered table, what its
accepted and rejected tables hold, and the readers later stages and figures use, so
that they import the schema, not the stage (embedpatch.rois.stage) and its DICOM reader."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from embedpatch.io.tables import TableError
from embedpatch.reasons import RoiWarning
from embedpatch.rois.parse import declares_rois
from embedpatch.vocab import (
    BOX_COLUMNS,
    COORDS_COLUMN,
    IDENTIFIERS,
    IMAGE_COLUMNS,
    IMAGE_TYPE,
    LATERALITY,
    ROI_CELLS,
    ROI_COORDS,
    ROI_COUNT,
    ROI_FRAMES,
    VIEW,
)

TABLE_BOUNDS = ["Rows", "Columns", "ImagesInAcquisition"]
INPUT_COLUMNS = [*IDENTIFIERS, *IMAGE_COLUMNS, *ROI_CELLS, *TABLE_BOUNDS, COORDS_COLUMN]
ROW_CELLS = [IMAGE_TYPE, LATERALITY, VIEW, *ROI_CELLS, *TABLE_BOUNDS, COORDS_COLUMN]
"""The cells of a row its outcome depends on, besides its image (the outcome cache's key)."""
REQUIRED_COLUMNS = [*IDENTIFIERS, "dicom_path", ROI_COUNT, ROI_COORDS]

ACCEPTED_COLUMNS = [
    *IDENTIFIERS,
    *IMAGE_COLUMNS,
    "roi_index",
    *BOX_COLUMNS,
    "frames",
    "rows",
    "columns",
    "n_frames",
    "coords_space",
    "flip_h",
    "flip_v",
    "clipped",
    "near_duplicate_of",
    "axes_swapped",
    "axes_fixed",
    "frames_on_2d",
    "suspect_flip",
    "flip_fixed",
    "mirror",
    "box_tissue",
    "mirror_tissue",
    "box_contrast",
    "mirror_contrast",
]
REJECTED_COLUMNS = [*IDENTIFIERS, "roi_index", "reason", "detail", "n_rois"]


def read_filtered(path: str) -> pd.DataFrame:
    """The columns stage 2 uses from the filtered table; optional ones absent are null.

    Integers come back as nullable Int64: through float64, 16-digit acc_anon would lose digits.
    """
    present = set(pq.read_schema(path).names)
    missing_required = [name for name in REQUIRED_COLUMNS if name not in present]
    if missing_required:
        raise TableError(f"{path}: missing required columns {missing_required}")
    columns = [name for name in INPUT_COLUMNS if name in present]
    table = pd.read_parquet(path, columns=columns, dtype_backend="numpy_nullable")
    return table.reindex(columns=INPUT_COLUMNS)


def rows_with_roi_cells(table: pd.DataFrame) -> pd.Series:
    """Rows whose ROI cells declare anything (rois.parse.declares_rois); the cells may hold
    anything (a count that is not a number counts as missing)."""
    count = pa.array(pd.to_numeric(table[ROI_COUNT], errors="coerce").astype("Float64"))
    coords, frames = (
        pa.array(table[name].astype("string"), from_pandas=True)
        for name in (ROI_COORDS, ROI_FRAMES)
    )
    return pd.Series(declares_rois(count, coords, frames), index=table.index)


def warning_counts(accepted: pd.DataFrame) -> dict[str, int]:
    """How many accepted ROIs (ACCEPTED_COLUMNS rows) carry each RoiWarning, in its order."""
    flags = {
        RoiWarning.CLIPPED: accepted["clipped"],
        RoiWarning.NEAR_DUPLICATE: accepted["near_duplicate_of"].notna(),
        RoiWarning.SUSPECT_FLIP: accepted["suspect_flip"],
        RoiWarning.FLIP_FIXED: accepted["flip_fixed"],
        RoiWarning.SUSPECT_AXES_SWAPPED: accepted["axes_swapped"],
        RoiWarning.AXES_FIXED: accepted["axes_fixed"],
        RoiWarning.FRAMES_ON_2D: accepted["frames_on_2d"],
    }
    return {str(code): int(flag.fillna(False).sum()) for code, flag in flags.items()}
