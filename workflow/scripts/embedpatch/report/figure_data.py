"""The numbers and selections each figure shows, computed without drawing (no matplotlib).

Every function here takes the run's tables (or arrays) and returns tables, arrays or
rows; the figure modules read the tables and images and draw them. Samples are
seeded (SEED): the same run gives the same figures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from embedpatch.reasons import RoiReason
from embedpatch.report.summary import ROI_KEY
from embedpatch.rois.columns import warning_counts as roi_warning_counts
from embedpatch.vocab import DBT, IMAGE_TYPES

if TYPE_CHECKING:
    from embedpatch.dicom import ImageHeader

SEED = 0
GALLERY_ROIS = 6  # ROIs (columns) in the patch gallery, each with every padding mode
GALLERY_NEGATIVES = 6
DBT_FRAME_PANELS = 6  # frames of the DBT ROI shown at most (evenly spaced)
FLIP_PANELS = 3  # suspect flips shown at most
TOP_VALUES = 8  # bars per category in the counts figure; the rest is "other"
LOCATION_POINTS = 20_000  # ROI centres plotted at most
MISSING = "(missing)"
STAGES = ("validate", "extract")
"""The stages that refuse ROIs, in the order the figures show them."""


# ---- shared --------------------------------------------------------------------------


def image_types_in(table: pd.DataFrame) -> list[str]:
    """The image types present in `table`, in IMAGE_TYPES order."""
    present = set(table["FinalImageType"].dropna())
    return [kind for kind in IMAGE_TYPES if kind in present]


def seeded_order(table: pd.DataFrame, key: Sequence[str], seed: int = SEED) -> pd.DataFrame:
    """`table` in the order of a seeded hash of its `key` columns: a row's place depends
    on its key alone, so rows added later (new exams) do not reshuffle the others, and a
    sample of the first rows changes only when a new row hashes among them."""
    salted = table[list(key)].assign(_seed=seed)  # every row's hash mixes in the seed
    ranks = pd.util.hash_pandas_object(salted, index=False)
    return table.iloc[np.argsort(ranks.to_numpy(), kind="stable")]


def interleaved_sample(
    table: pd.DataFrame, n: int, key: Sequence[str], seed: int = SEED
) -> pd.DataFrame:
    """At most `n` rows in seeded_order of `key`, alternating between image types (each gets
    a turn) and, in a table with a `dtype` column (patches), between dtypes first: every
    turn starts with one row of each dtype, so that every pixel type is shown."""
    ordered = seeded_order(table, key, seed)
    dtype = ordered["dtype"] if "dtype" in ordered else pd.Series("", index=ordered.index)
    turn = ordered.groupby([dtype, ordered["FinalImageType"]], dropna=False).cumcount()
    within = ordered.groupby([turn, dtype], dropna=False).cumcount()  # nth of its dtype
    return ordered.iloc[np.lexsort((within.to_numpy(), turn.to_numpy()))[:n]]


# ---- funnel and rejections -----------------------------------------------------------


def reason_counts(rejected: pd.DataFrame) -> pd.DataFrame:
    """Declared ROIs refused, per reason (rows: every RoiReason, then any other) and stage."""
    counts = rejected.groupby(["reason", "stage"])["n_rois"].sum().unstack(fill_value=0)
    reasons = [str(reason) for reason in RoiReason]
    extra = sorted(set(counts.index) - set(reasons))
    return counts.reindex(index=reasons + extra, columns=list(STAGES), fill_value=0).astype("int64")


def warning_counts(rois: pd.DataFrame) -> pd.Series:
    """Accepted ROIs carrying each RoiWarning (rois.columns.warning_counts, as a Series)."""
    return pd.Series(roi_warning_counts(rois), dtype="int64")


# ---- ROI geometry --------------------------------------------------------------------


def rois_per_image(rois: pd.DataFrame) -> pd.DataFrame:
    """Images by their number of accepted ROIs (rows: 1, 2, ...) and image type (columns,
    only the types present); empty when there is no ROI."""
    per_image = rois.groupby(["FinalImageType", "anon_dicom_path"]).size()
    if per_image.empty:
        return pd.DataFrame()
    table = per_image.groupby(level=0).value_counts().unstack(level=0, fill_value=0).sort_index()
    return table[image_types_in(rois)]


def roi_size_groups(rois: pd.DataFrame, low: str, high: str) -> dict[str, np.ndarray]:
    """Per image type present, the accepted ROIs' extent from column `low` to `high`
    (heights: ymin, ymax; widths: xmin, xmax), in pixels."""
    size = (rois[high] - rois[low]).astype("int64")
    return {kind: size[rois["FinalImageType"] == kind].to_numpy() for kind in image_types_in(rois)}


def dbt_frame_stats(rois: pd.DataFrame) -> pd.DataFrame:
    """Per ROI with frames: first and last listed frame, frames listed (distinct), span
    (last - first + 1) and depth of the middle frame (0 = first frame of the volume, 1 = last).
    """
    first = rois["frames"].map(min).astype("int64")
    last = rois["frames"].map(max).astype("int64")
    return pd.DataFrame(
        {
            "first": first,
            "last": last,
            "listed": rois["frames"].map(lambda frames: len(set(frames))).astype("int64"),
            "span": last - first + 1,
            "depth": (first + last) / 2 / np.maximum(rois["n_frames"] - 1, 1).astype("float64"),
        },
        index=rois.index,
    )


def normalized_centres(rois: pd.DataFrame) -> pd.DataFrame:
    """ROI centres on a normalized breast frame: `x` from the chest wall (0) to the far edge
    (1), R images mirrored (their chest wall is at x = columns); `y` from top (0) to bottom (1).
    """
    x = ((rois["xmin"] + rois["xmax"]) / 2 / rois["columns"]).astype("float64")
    x = x.where(rois["ImageLateralityFinal"] != "R", 1.0 - x)
    y = ((rois["ymin"] + rois["ymax"]) / 2 / rois["rows"]).astype("float64")
    return pd.DataFrame({"x": x, "y": y}, index=rois.index)


def ordered_values(values: pd.Series, first: Sequence[str]) -> list[str]:
    """The distinct `values`: those in `first` in that order, then the others sorted."""
    present = set(values)
    return [value for value in first if value in present] + sorted(present - set(first))


# ---- the filtered table --------------------------------------------------------------


COUNT_COLUMNS = {
    "FinalImageType": "image type",
    "ViewPosition": "view",
    "ImageLateralityFinal": "laterality",
    "Manufacturer": "manufacturer",
}


def top_counts(values: pd.Series, top: int = TOP_VALUES) -> pd.Series:
    """Counts of the `top` commonest values (missing as MISSING), the rest as one 'other' bar."""
    counts = values.astype("object").fillna(MISSING).value_counts()
    if len(counts) <= top:
        return counts
    rest = counts.iloc[top - 1 :]
    return pd.concat(
        [counts.iloc[: top - 1], pd.Series({f"other ({len(rest)} values)": rest.sum()})]
    )


# ---- positive / negative balance ----------------------------------------------------------

BALANCE_COLUMNS = {
    "FinalImageType": "image type",
    "ViewPosition": "view",
    "ImageLateralityFinal": "laterality",
}
LABELS = ("roi", "negative")


def label_counts(manifest: pd.DataFrame, column: str) -> pd.DataFrame:
    """Patches by the values of `column` (rows, commonest first) and label (roi, negative)."""
    values = manifest[column].astype("object").fillna(MISSING)
    counts = pd.crosstab(values, manifest["label"]).reindex(columns=list(LABELS), fill_value=0)
    return counts.loc[counts.sum(axis=1).sort_values(ascending=False, kind="stable").index]


def negative_sources(manifest: pd.DataFrame) -> dict[str, int]:
    """Images that gave negative patches: those that also gave ROI patches, and the others."""
    negatives = set(manifest.loc[manifest["label"] == "negative", "anon_dicom_path"])
    with_rois = negatives & set(manifest.loc[manifest["label"] == "roi", "anon_dicom_path"])
    return {"with ROIs": len(with_rois), "without ROIs": len(negatives - with_rois)}


# ---- pixels on display ---------------------------------------------------------------


def display_range(values: np.ndarray) -> tuple[float, float]:
    """The display contrast of `values`: their 0.5 and 99.5 percentiles."""
    low, high = np.percentile(values, [0.5, 99.5])
    return float(low), float(high)


def scaled(pixels: np.ndarray, low: float, high: float) -> np.ndarray:
    """Pixels mapped linearly from [low, high] onto [0, 1], clipped."""
    return np.clip((pixels.astype(np.float64) - low) / max(high - low, 1e-9), 0.0, 1.0)


def image_dtype(header: ImageHeader) -> np.dtype:
    """The dtype of the stored values of the image `header` describes (native byte order)."""
    kind = "i" if header.pixel_representation else "u"
    return np.dtype(f"{kind}{max(header.bits_allocated // 8, 1)}")


def tissue_bright(pixels: np.ndarray, header: ImageHeader) -> np.ndarray:
    """Stored pixels of the image `header` describes, MONOCHROME1 inverted (tissue bright).

    The pixels may be of a wider dtype than the image's (a patch of an exam mixing pixel
    types): they are inverted in the image's own, which holds them exactly."""
    if header.photometric_interpretation == "MONOCHROME1":
        # Imported on use: the table figures import this module without a DICOM reader.
        from embedpatch.dicom import invert_monochrome1

        stored = pixels.astype(image_dtype(header), copy=False)
        return invert_monochrome1(stored, header.bits_stored)
    return pixels


def patch_display(patch: np.ndarray, content: np.ndarray) -> np.ndarray:
    """A tissue-bright patch in [0, 1]: contrast from its `content` pixels (those copied
    from the image), padding 0."""
    if not content.any():
        return np.zeros(patch.shape)
    return np.where(content, scaled(patch, *display_range(patch[content])), 0.0)


def content_mask(patch: pd.Series, rows: int, columns: int) -> np.ndarray:
    """The pixels of a manifest row's patch copied from its image (the rest is zero padding):
    the patch window inside the image, and for black padding inside the ROI box too."""
    size = int(patch["patch_size"])
    ys = np.arange(size) + int(patch["patch_y0"])
    xs = np.arange(size) + int(patch["patch_x0"])
    inside_y = (ys >= 0) & (ys < rows)
    inside_x = (xs >= 0) & (xs < columns)
    if patch["padding"] == "black":
        inside_y &= (ys >= patch["ymin"]) & (ys < patch["ymax"])
        inside_x &= (xs >= patch["xmin"]) & (xs < patch["xmax"])
    return inside_y[:, None] & inside_x[None, :]


# ---- what the image figures show -----------------------------------------------------


ROI_PATCH_KEY = ["anon_dicom_path", "roi_index", "frame"]
NEGATIVE_PATCH_KEY = ["anon_dicom_path", "frame", "patch_y0", "patch_x0"]


def gallery_rows(
    manifest: pd.DataFrame,
    n_rois: int = GALLERY_ROIS,
    n_negatives: int = GALLERY_NEGATIVES,
    seed: int = SEED,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The manifest rows shown: every padding of `n_rois` sampled ROI patches (one frame
    each), ordered ROI by ROI and in their shard's order, and `n_negatives` sampled
    negatives; image types alternate."""
    rois = manifest[manifest["label"] == "roi"]
    patches = rois.drop_duplicates(ROI_PATCH_KEY)
    keys = interleaved_sample(patches, n_rois, ROI_PATCH_KEY, seed)[ROI_PATCH_KEY]
    order = keys.reset_index(drop=True).reset_index(names="order")
    chosen = rois.reset_index(names="row").merge(order, on=ROI_PATCH_KEY)
    chosen = chosen.sort_values(["order", "index"]).set_index("row").drop(columns="order")
    negatives = manifest[manifest["label"] == "negative"]
    return chosen, interleaved_sample(negatives, n_negatives, NEGATIVE_PATCH_KEY, seed)


def extracted_rois(rois: pd.DataFrame, manifest: pd.DataFrame) -> pd.DataFrame:
    """The accepted ROIs of images extraction read (in the manifest): an image refused since
    validation (gone, or failing to decode) is not drawn."""
    # unique() first: isin on Arrow-backed strings walks its values in Python (1.8 s
    # against 0.5 s for the 220,000 patch rows of 50,000 exams).
    return rois[rois["anon_dicom_path"].isin(manifest["anon_dicom_path"].unique())]


def overlay_2d_rois(rois: pd.DataFrame) -> pd.DataFrame:
    """The accepted ROIs of the 2D image with the most of them (first path on ties), by
    roi_index; empty when there is no 2D ROI."""
    flat = rois[rois["FinalImageType"] == "2D"]
    if flat.empty:
        return flat
    path = flat.groupby("anon_dicom_path").size().sort_index().idxmax()
    return flat[flat["anon_dicom_path"] == path].sort_values("roi_index")


def overlay_dbt_roi(rois: pd.DataFrame) -> tuple[pd.Series, list[int]] | None:
    """The DBT ROI listing the most frames (first on ties) and the frames shown (at most
    DBT_FRAME_PANELS, evenly spread); None when there is no DBT ROI."""
    dbt = rois[rois["FinalImageType"] == DBT].sort_values(ROI_KEY)
    if dbt.empty:
        return None
    roi = dbt.loc[dbt_frame_stats(dbt)["listed"].idxmax()]
    return roi, spread(sorted(set(roi["frames"])), DBT_FRAME_PANELS)


def suspect_flip_sample(rois: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """At most FLIP_PANELS suspect flips, the first in seeded_order, and how many there are."""
    flips = rois[rois["suspect_flip"].fillna(False)]
    return seeded_order(flips, ROI_KEY).iloc[:FLIP_PANELS].sort_index(), len(flips)


def spread(values: Sequence[int], most: int) -> list[int]:
    """At most `most` of `values`, evenly spread, first and last included."""
    if len(values) <= most:
        return list(values)
    picks = np.linspace(0, len(values) - 1, most).round().astype(int)
    return [values[i] for i in picks]


DISPLAY_PIXELS = 1024
"""A whole image is drawn from a view of at most about this many pixels a side (a figure
is about 800 pixels wide): decoding and drawing more would not show."""
PANEL_PIXELS = 512
"""The same for a zoomed window in one panel of several (about 370 pixels wide)."""


def display_factor(rows: int, columns: int, pixels: int = DISPLAY_PIXELS) -> int:
    """The smallest power of two that brings the longer side to `pixels` or less (1 for
    an area already that small)."""
    factor = 1
    while max(rows, columns) > factor * pixels:
        factor *= 2
    return factor


def context_window(
    box: Sequence[int], rows: int, columns: int, scale: float = 3.0
) -> tuple[int, int, int, int]:
    """A square (ymin, xmin, ymax, xmax) around `box`, `scale` times its longer side (at
    least a quarter of the shorter image side), kept inside the image where it fits."""
    ymin, xmin, ymax, xmax = box
    side = max(scale * max(ymax - ymin, xmax - xmin), min(rows, columns) / 4)
    side = int(min(side, rows, columns))
    y0 = int(np.clip((ymin + ymax - side) // 2, 0, rows - side))
    x0 = int(np.clip((xmin + xmax - side) // 2, 0, columns - side))
    return y0, x0, y0 + side, x0 + side
