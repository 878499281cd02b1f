"""Each exam's specification, built from its rows of the stage-2 tables.

`build_exam_specs` decides the content of an exam's ExamSpec (embedpatch.patches.spec):
its images with accepted ROIs (and, with negatives on, the images
embedpatch.patches.negative_images chose), each image's ROIs, and the boxes its
negative windows avoid. An exam's specification depends on its own rows only (the
filter keeps each image path in one row, so in one exam).

`update_exam_specs` builds only the exams whose rows changed since the last build: each
exam has a digest (`exam_digests`) of every cell `build_exam_specs` reads of its rows,
of the number of negatives per image and of the code (embedpatch.provenance); an exam
whose digest is the last build's keeps that build's specification. At 10,000 exams,
ten new ones are built in milliseconds instead of all of them in half a second.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from embedpatch.geometry import Box, Mirror
from embedpatch.io.tables import frame_records
from embedpatch.patches.spec import ExamSpec
from embedpatch.provenance import code_digest
from embedpatch.vocab import BOX_COLUMNS, IMAGE_TYPE, LATERALITY, VIEW

IDENTITY = ["acc_anon", "empi_anon"]
IMAGE_FIELDS = ["anon_dicom_path", "dicom_path", IMAGE_TYPE, LATERALITY, VIEW]
"""What an image's specification reads of its row (in either table)."""
ROI_FIELDS = [
    "anon_dicom_path", "roi_index", *BOX_COLUMNS, "frames",
    "suspect_flip", "flip_fixed", "mirror", "rows", "columns",
]  # fmt: skip
"""What an ROI's specification reads of its rois.parquet row."""
IMAGE_ROW = IDENTITY + IMAGE_FIELDS
"""Every column `build_exam_specs` reads of an image's row (in either table): all it
reads of a row of the negative images."""
ROI_ROW = list(dict.fromkeys(IMAGE_ROW + ROI_FIELDS))
"""Every column `build_exam_specs` reads of a row of the ROI table."""
LIBRARIES = ("numpy", "pandas", "pyarrow", "pydantic")
"""Libraries whose versions are part of every digest (they read the cells, write the JSON)."""


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
    rois: pd.DataFrame, negative_images: pd.DataFrame, negatives_per_image: int
) -> dict[str, str]:
    """acc_anon (as text) -> the canonical JSON of that exam's ExamSpec.

    `rois` are the accepted ROIs (rois.parquet); `negative_images` the 2D / C-view
    images that get `negatives_per_image` negative windows (embedpatch.patches.negative_images
    chooses them). Exams with neither ROIs nor negatives get no job.
    SpecError if a specification breaks ExamSpec's rules (a bug: the tables are validated).
    """
    images = rois[IMAGE_ROW]
    if negatives_per_image > 0:
        images = pd.concat([images, negative_images[IMAGE_ROW]])
    images = images.drop_duplicates("anon_dicom_path").sort_values(["acc_anon", "anon_dicom_path"])
    rois_by_image: dict[str, list[dict]] = {}
    for roi in frame_records(rois.sort_values("roi_index"), ROI_FIELDS):
        rois_by_image.setdefault(roi["anon_dicom_path"], []).append(roi)
    with_negatives = set(negative_images["anon_dicom_path"]) if negatives_per_image else set()
    exams: dict[int, dict[str, Any]] = {}
    for image in frame_records(images, IMAGE_ROW):
        acc_anon = int(image["acc_anon"])
        exam = exams.setdefault(
            acc_anon, {"acc_anon": acc_anon, "empi_anon": int(image["empi_anon"]), "images": []}
        )
        path = image["anon_dicom_path"]
        negatives = negatives_per_image if path in with_negatives else 0
        exam["images"].append(_image(image, rois_by_image.get(path, []), negatives))
    return {str(acc): ExamSpec.from_dict(exam).to_json() for acc, exam in exams.items()}


# ---- rebuilding only what changed --------------------------------------------------------


def _exam_keys(acc_anon: pd.Series) -> pd.Series:
    """acc_anon as the text keys of `build_exam_specs` (the integer's digits)."""
    unique = acc_anon.unique()
    return acc_anon.map(dict(zip(unique, (str(int(acc)) for acc in unique), strict=True)))


def _row_hashes(rows: pd.DataFrame, kind: str) -> pd.Series:
    """A 64-bit hash of each row's cells and of `kind` (which table the row is of).

    Lists of frames are hashed as text; a type change that keeps the value (an Int64
    column read as int64) may change the hash, which only rebuilds an exam."""
    cells = rows.assign(kind=kind)
    if "frames" in cells:
        cells["frames"] = [
            None if frames is None else ",".join(str(int(frame)) for frame in frames)
            for frames in cells["frames"]
        ]
    return pd.util.hash_pandas_object(cells, index=False)


def exam_digests(
    rois: pd.DataFrame, negative_images: pd.DataFrame, negatives_per_image: int
) -> dict[str, str]:
    """acc_anon (as text) -> a SHA-256 of everything `build_exam_specs` reads for that
    exam: the cells of its rows (ROI_ROW of `rois`; IMAGE_ROW of `negative_images`
    when negatives are on), `negatives_per_image`, and the code. Rows are hashed as a
    set: their order, like build_exam_specs's output, does not matter."""
    parts = [(rois, ROI_ROW, "roi")]
    if negatives_per_image > 0:
        parts.append((negative_images, IMAGE_ROW, "negative"))
    hashes = pd.concat(
        [
            pd.DataFrame({"exam": _exam_keys(rows["acc_anon"]), "hash": _row_hashes(rows[c], kind)})
            for rows, c, kind in parts
        ],
        ignore_index=True,
    ).sort_values(["exam", "hash"], kind="stable")
    seed = code_digest(LIBRARIES) + f"negatives_per_image={negatives_per_image}\0".encode()
    exams = hashes["exam"].to_numpy()
    values = hashes["hash"].to_numpy(dtype=np.uint64)
    if len(exams) == 0:
        return {}
    starts = np.flatnonzero(np.r_[True, exams[1:] != exams[:-1]])
    ends = [*starts[1:], len(exams)]
    return {
        exams[start]: hashlib.sha256(seed + values[start:end].tobytes()).hexdigest()
        for start, end in zip(starts, ends, strict=True)
    }


@dataclass(frozen=True)
class ExamSpecBuild:
    """One build's specifications and the digest of each exam's rows (`exam_digests`)."""

    specs: dict[str, str] = field(default_factory=dict)
    digests: dict[str, str] = field(default_factory=dict)

    def reused(self, digests: Mapping[str, str]) -> dict[str, str]:
        """The specifications of this build whose exam has the same digest in `digests`."""
        return {
            exam: self.specs[exam]
            for exam, digest in digests.items()
            if self.digests.get(exam) == digest and exam in self.specs
        }


def update_exam_specs(
    rois: pd.DataFrame,
    negative_images: pd.DataFrame,
    negatives_per_image: int,
    last: ExamSpecBuild | None = None,
) -> tuple[ExamSpecBuild, int]:
    """This build of every exam's specification, taking from `last` those of the exams
    whose digest is unchanged and building the others (`build_exam_specs`); and the
    number built. The same specifications as build_exam_specs of the whole tables."""
    digests = exam_digests(rois, negative_images, negatives_per_image)
    reused = (last or ExamSpecBuild()).reused(digests)
    if len(reused) == len(digests):
        return ExamSpecBuild(reused, digests), 0

    def changed(rows: pd.DataFrame) -> pd.DataFrame:
        return rows[~_exam_keys(rows["acc_anon"]).isin(reused)]

    negatives = changed(negative_images) if negatives_per_image > 0 else negative_images
    built = build_exam_specs(changed(rois), negatives, negatives_per_image)
    return ExamSpecBuild(reused | built, digests), len(built)
