"""Each exam's extraction specification, built from the stage-2 tables.

The specification itself, its rules and its canonical JSON are embedpatch.patch_spec's
ExamSpec; this module decides its content: an exam's images with accepted ROIs (and,
with negatives on, its 2D / C-view images without a refused ROI), each image's ROIs,
and the boxes its negative windows avoid. The extraction rule carries its batch's
specifications as a Snakemake `params` value (embedpatch.batches): Snakemake reruns
exactly the batches in which a specification changed (new ROIs, a new image, a
changed box), and none when the tables are only rewritten or reordered; each shard
records the hash of its exam's specification.
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from embedpatch.batches import group_into_batches
from embedpatch.geometry import Box, Mirror
from embedpatch.patch_spec import ExamSpec
from embedpatch.vocab import BOX_COLUMNS, FLAT_TYPES, IMAGE_TYPE, LATERALITY, VIEW

IDENTITY = ["acc_anon", "empi_anon"]
IMAGE_FIELDS = ["anon_dicom_path", "dicom_path", IMAGE_TYPE, LATERALITY, VIEW]


def _text(value: object) -> str | None:
    return None if pd.isna(value) else str(value)


def _box(roi: Mapping[str, Any]) -> Box:
    ymin, xmin, ymax, xmax = (int(roi[name]) for name in BOX_COLUMNS)
    return ymin, xmin, ymax, xmax


def _roi(roi: Mapping[str, Any]) -> dict[str, Any]:
    """An ROI of rois.parquet as RoiSpec's fields."""
    return {
        "roi_index": int(roi["roi_index"]),
        **dict(zip(BOX_COLUMNS, _box(roi), strict=True)),
        "frames": [int(frame) for frame in roi["frames"]],
    }


def _avoid_boxes(roi: Mapping[str, Any]) -> list[Box]:
    """The ROI's box, and its mirror too when the ROI is a suspected (unfixed) flip."""
    box = _box(roi)
    if roi["suspect_flip"] and not roi["flip_fixed"]:
        return [box, Mirror(roi["mirror"]).apply(box, int(roi["rows"]), int(roi["columns"]))]
    return [box]


def _image(image: Mapping[str, Any], rois: list[dict], negatives: int) -> dict[str, Any]:
    """An image row and its ROIs as ImageSpec's fields."""
    return {
        "anon_dicom_path": _text(image["anon_dicom_path"]),
        "dicom_path": _text(image["dicom_path"]),
        "image_type": _text(image[IMAGE_TYPE]),
        "laterality": _text(image[LATERALITY]),
        "view": _text(image[VIEW]),
        "rois": [_roi(roi) for roi in rois],
        "avoid": [box for roi in rois for box in _avoid_boxes(roi)],
        "negatives": negatives,
    }


def build_exam_specs(
    rois: pd.DataFrame, negative_candidates: pd.DataFrame, negatives_per_image: int
) -> dict[str, str]:
    """acc_anon (as text) -> the canonical JSON of that exam's ExamSpec.

    `rois` are the accepted ROIs (rois.parquet); `negative_candidates` the 2D / C-view
    images negatives may come from (the caller leaves out images with a refused ROI:
    their lesion's place is unknown). Exams with neither ROIs nor negatives get no job.
    SpecError if a specification breaks ExamSpec's rules (a bug: the tables are validated).
    """
    columns = IDENTITY + IMAGE_FIELDS
    images = rois[columns]
    if negatives_per_image > 0:
        images = pd.concat([images, negative_candidates[columns]])
    images = images.drop_duplicates("anon_dicom_path").sort_values(["acc_anon", "anon_dicom_path"])
    rois_by_image: dict[str, list[dict]] = {}
    for roi in rois.sort_values("roi_index").to_dict("records"):
        rois_by_image.setdefault(roi["anon_dicom_path"], []).append(roi)
    with_negatives = set(negative_candidates["anon_dicom_path"]) if negatives_per_image else set()
    exams: dict[int, dict[str, Any]] = {}
    for image in images.to_dict("records"):
        acc_anon = int(image["acc_anon"])
        exam = exams.setdefault(
            acc_anon, {"acc_anon": acc_anon, "empi_anon": int(image["empi_anon"]), "images": []}
        )
        path = image["anon_dicom_path"]
        negatives = negatives_per_image if path in with_negatives else 0
        exam["images"].append(_image(image, rois_by_image.get(path, []), negatives))
    return {str(acc): ExamSpec.from_dict(exam).to_json() for acc, exam in exams.items()}


def negative_candidates(filtered: pd.DataFrame, rejected: pd.DataFrame) -> pd.DataFrame:
    """2D / C-view images of the filtered table with no refused ROI."""
    flat = filtered[IMAGE_TYPE].isin(FLAT_TYPES)
    refused = filtered["anon_dicom_path"].isin(rejected["anon_dicom_path"])
    return filtered[flat & ~refused]


def _read(path: str, columns: list[str] | None = None) -> pd.DataFrame:
    return pd.read_parquet(path, columns=columns, dtype_backend="numpy_nullable")


@cache
def _cached_specs(
    rois_path: str, rejected_path: str, filtered_path: str, negatives: int, stamp: tuple
) -> dict[str, str]:
    rois = _read(rois_path)
    candidates = rois.iloc[0:0]
    if negatives > 0:
        filtered = _read(filtered_path, IDENTITY + IMAGE_FIELDS)
        candidates = negative_candidates(filtered, _read(rejected_path, ["anon_dicom_path"]))
    return build_exam_specs(rois, candidates, negatives)


def _stamp(paths: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(Path(path).stat().st_mtime_ns for path in paths)


@cache
def _cached_batches(
    paths: tuple[str, str, str], negatives: int, n_batches: int, stamp: tuple
) -> dict[str, dict[str, str]]:
    return group_into_batches(_cached_specs(*paths, negatives, stamp), n_batches)


def load_exam_batches(
    rois_path: str,
    rejected_path: str,
    filtered_path: str,
    negatives_per_image: int,
    n_batches: int,
) -> dict[str, dict[str, str]]:
    """batch -> {acc_anon: specification}, from the stage-2 tables (read once per process
    and file version: Snakemake asks for one batch's specifications per job)."""
    paths = (rois_path, rejected_path, filtered_path)
    return _cached_batches(paths, negatives_per_image, n_batches, _stamp(paths))
