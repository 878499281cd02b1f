"""Plan and write the synthetic EMBED-like demo cohort: tables, DICOM files and truth.

The plan draws patients, exams and image rows, gives every deliberately odd case
(bad ROI strings, broken files, quirks and their hard negatives) its own image,
scatters ordinary ROIs, then writes DICOMs, the metadata table (current and
legacy serializations), the clinical table and truth.json. Everything follows
from the seed: the same arguments give byte-identical files.
"""

from __future__ import annotations

import json
import logging
import math
import re
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from datetime import date, timedelta
from enum import Enum
from pathlib import Path

import numpy as np
import pandas as pd
from pydicom.uid import generate_uid

from embedpatch.demo import SOURCE_PREFIX, phantom
from embedpatch.demo.dicom_writer import (
    BREAST_TOMOSYNTHESIS,
    MAMMO_FOR_PRESENTATION,
    DicomHeader,
    Encoding,
    PixelType,
    write_dicom,
)
from embedpatch.demo.phantom import BreastShape, Lesion
from embedpatch.geometry import Mirror, swap_axes
from embedpatch.reasons import FilterReason, RoiReason, RoiWarning

log = logging.getLogger(__name__)

COHORT = "cohort_1"
MIN_PATIENTS = 4
FIRST_PATIENTS_EXAMS = (3, 3, 3, 2)  # exams of the first patients: room for every odd case
CVIEW_SIZE = (2457, 1996)  # full-size rows, columns
DBT_SIZE = (2457, 1890)
SCREEN_CAPTURE_SIZE = (1024, 1280)
FINDING_SIDE_P = 0.25  # chance an exam side carries an ROI finding
ROI_P = {"2D": 0.85, "cview": 0.5, "3D": 0.85}  # chance an image on such a side has ROIs
ROI_COUNT_P = (0.6, 0.3, 0.1)  # 1, 2 or 3 ROIs
EMPTY_STYLES = ("list", "tuple", None)  # "[]", "()", missing cell
ORIENTATION = {
    ("L", "CC"): ("A", "R"),
    ("R", "CC"): ("P", "L"),
    ("L", "MLO"): ("A", "FR"),
    ("R", "MLO"): ("P", "FL"),
}
"""PatientOrientation by laterality and view: columns run from the chest wall (A) or towards
it (P, the chest wall on the right); rows run as usual."""
UPSIDE_DOWN = {
    ("L", "CC"): ("A", "L"),
    ("R", "CC"): ("P", "R"),
    ("L", "MLO"): ("A", "HL"),
    ("R", "MLO"): ("P", "HR"),
}
"""PatientOrientation of an image stored with its rows reversed."""
PNG_FLIPPED_VIEWS = ("CC", "MLO", "ML")
"""Views whose images the maintainers' notebook mirrored left-right when the chest wall was
on the right; the older table (metadata_legacy.csv) holds boxes in that PNG space."""


@dataclass(frozen=True)
class Vendor:
    """A manufacturer as it appears in the tables and the DICOM headers."""

    name: str
    model: str
    size_2d: tuple[int, int]  # full-size rows, columns
    photometric: str
    has_tomo: bool


HOLOGIC = Vendor("HOLOGIC", "Selenia Dimensions", (3328, 2560), "MONOCHROME2", True)
GE = Vendor("GE", "Senographe Pristina", (2850, 2394), "MONOCHROME2", False)
FUJIFILM = Vendor("FUJIFILM", "AMULET Innovality", (2816, 2304), "MONOCHROME1", False)


class DemoRois(Enum):
    """Where an exam's ROIs come from."""

    RANDOM = "random"  # ordinary findings; hosts the odd cases
    CASE_ONLY = "case_only"  # only the ROIs of the one case it hosts
    NONE = "none"  # a negative exam


@dataclass(frozen=True)
class DemoExam:
    """What kind of exam to draw."""

    vendor: Vendor
    tomo: bool
    policy: DemoRois
    pixels: PixelType = PixelType.UINT16  # how its images store their values


# The first exams are fixed so every cohort has tomosynthesis, MONOCHROME1, a negative
# exam, and exams whose every image is signed (int16) or 8-bit (uint8).
FIXED_EXAMS = (
    DemoExam(HOLOGIC, True, DemoRois.RANDOM),
    DemoExam(HOLOGIC, True, DemoRois.RANDOM),
    DemoExam(FUJIFILM, False, DemoRois.CASE_ONLY),
    DemoExam(GE, False, DemoRois.NONE),
    DemoExam(GE, False, DemoRois.CASE_ONLY, PixelType.INT16),
    DemoExam(HOLOGIC, False, DemoRois.CASE_ONLY, PixelType.UINT8),
)


@dataclass(frozen=True)
class Exam:
    """One screening exam (one acc_anon)."""

    index: int
    empi: int
    acc: int
    study_date: date
    age: int
    density: int
    spec: DemoExam
    study_uid: str

    @property
    def description(self) -> str:
        return "MG Screening Bilateral w/ Tomo" if self.spec.tomo else "MG Screening Bilateral"


class FileState(Enum):
    """What lies at an image row's path."""

    WRITTEN = "written"
    MISSING = "missing"  # the row promises a file that is not there
    GARBAGE = "garbage"  # random bytes, not DICOM
    TRUNCATED = "truncated"  # a valid file cut in the middle of its pixel data
    NONE = "none"  # table-only row (screen capture, or a path the filter drops)


@dataclass(frozen=True)
class TruthRecord:
    """One expectation for the tests; `roi_index` -1 is about the whole row."""

    anon_dicom_path: str
    acc_anon: int
    roi_index: int
    kind: str  # filtered | reject | warn | valid
    reason: str
    note: str


@dataclass
class PlannedImage:
    """One metadata row and what its file holds; odd cases edit the table-side fields."""

    exam: Exam
    index: int
    image_type: str  # FinalImageType
    laterality: str | None
    view: str | None
    size: tuple[int, int]  # rows, columns of the pixels
    frames: int  # frames of a DBT volume, 1 otherwise
    series_uid: str
    sop_uid: str
    shape: BreastShape | None
    spot_mag: bool = False
    case: str | None = None  # name of the odd case this row carries
    lesions: list[Lesion] = field(default_factory=list)  # what the pixels show
    coords: list[list] | None = field(default_factory=list)  # ROI_coords; None: missing
    frame_lists: list[list] | None = field(default_factory=list)  # ROI_frames
    num_roi: int | None = None  # None: the number of boxes
    style: str | None = None  # "list" or "tuple" serialization; None: not chosen yet
    truncated_cell: str | None = None  # "coords" or "frames": cut mid-value
    table_size: tuple[int, int] | None = None  # Rows, Columns the table claims, if different
    file_state: FileState = FileState.WRITTEN
    path_override: str | None = None
    encoding: Encoding = Encoding.UNCOMPRESSED
    pixels: PixelType = PixelType.UINT16  # how the file stores the values
    truth: list[TruthRecord] = field(default_factory=list)

    @property
    def relative_path(self) -> str:
        exam = self.exam
        return f"{COHORT}/{exam.empi}/{exam.study_uid}/{self.series_uid}/{self.sop_uid}.dcm"

    @property
    def table_path(self) -> str:
        if self.path_override is not None:
            return self.path_override
        return SOURCE_PREFIX + self.relative_path

    @property
    def has_rois(self) -> bool:
        return bool(self.lesions or self.coords)

    @property
    def png_mirror(self) -> Mirror:
        """How the maintainers' PNG of this image was mirrored (left-right or not at all)."""
        flipped = self.view in PNG_FLIPPED_VIEWS and self.shape is not None
        return Mirror.X if flipped and self.shape.chest_wall_right else Mirror.NONE

    def flag(self, kind: str, reason: str, roi_index: int, note: str) -> None:
        """Record an expectation about this row for truth.json."""
        self.truth.append(
            TruthRecord(self.table_path, self.exam.acc, roi_index, kind, str(reason), note)
        )


@dataclass
class Plan:
    """The whole cohort before pixels: exams and their image rows, in table order."""

    exams: list[Exam]
    images: list[PlannedImage]


def _uid(seed: int, *parts: object) -> str:
    return generate_uid(entropy_srcs=[str(seed), *(str(part) for part in parts)])


def _distinct_ints(rng: np.random.Generator, low: int, high: int, n: int) -> list[int]:
    """`n` distinct Python ints in [low, high), drawn without going through float."""
    return [int(value) + low for value in rng.choice(high - low, size=n, replace=False)]


def _scaled(size: tuple[int, int], scale: float) -> tuple[int, int]:
    return (round(size[0] * scale), round(size[1] * scale))


# ---- patients and exams ----------------------------------------------------------


def _exam_specs(rng: np.random.Generator, n_exams: int) -> list[DemoExam]:
    specs = list(FIXED_EXAMS[:n_exams])
    for _ in range(n_exams - len(specs)):
        vendor = GE if rng.random() < 0.2 else HOLOGIC
        specs.append(DemoExam(vendor, vendor.has_tomo and rng.random() < 0.4, DemoRois.RANDOM))
    return specs


def _plan_exams(rng: np.random.Generator, seed: int, n_patients: int) -> list[Exam]:
    counts = [
        FIRST_PATIENTS_EXAMS[p] if p < len(FIRST_PATIENTS_EXAMS) else int(rng.integers(1, 3))
        for p in range(n_patients)
    ]
    empis = _distinct_ints(rng, 10**7, 10**8, n_patients)
    accs = iter(_distinct_ints(rng, 10**15, 10**16, sum(counts)))
    specs = iter(_exam_specs(rng, sum(counts)))
    exams: list[Exam] = []
    for empi, count in zip(empis, counts, strict=True):
        day = date(2012, 1, 1) + timedelta(days=int(rng.integers(0, 6 * 365)))
        age, density = int(rng.integers(40, 80)), int(rng.integers(1, 5))
        for visit in range(count):
            acc = next(accs)
            exams.append(
                Exam(len(exams), empi, acc, day, age + visit, density, next(specs), _uid(seed, acc))
            )
            day += timedelta(days=int(rng.integers(300, 500)))
    return exams


# ---- image rows ----------------------------------------------------------------------


@dataclass(frozen=True)
class _RowKind:
    """An image row to create, before any ROI is placed."""

    image_type: str
    laterality: str | None
    view: str | None
    size: tuple[int, int]  # full size
    frames: int = 1
    spot_mag: bool = False
    file_state: FileState = FileState.WRITTEN


def _exam_rows(exam: Exam, dbt_frames: int) -> list[_RowKind]:
    """Screening views: 2D for every exam, plus C-view and DBT for tomosynthesis exams."""
    views = [(laterality, view) for laterality in "LR" for view in ("CC", "MLO")]
    rows = [_RowKind("2D", lat, view, exam.spec.vendor.size_2d) for lat, view in views]
    if exam.spec.tomo:
        rows += [_RowKind("cview", lat, view, CVIEW_SIZE) for lat, view in views]
        rows += [_RowKind("3D", lat, view, DBT_SIZE, dbt_frames) for lat, view in views]
    return rows


# Rows the filter drops whatever their ROIs: (exam index, kind).
EXTRA_ROWS = (
    (0, _RowKind("2D", "L", "CC", HOLOGIC.size_2d, spot_mag=True)),
    (1, _RowKind("2D", "R", "XCCL", HOLOGIC.size_2d, spot_mag=True)),
    (0, _RowKind("ROI_SSC", "L", "CC", SCREEN_CAPTURE_SIZE, file_state=FileState.NONE)),
    (1, _RowKind("other", None, None, SCREEN_CAPTURE_SIZE, file_state=FileState.NONE)),
)


def _standard_orientation(kind: _RowKind) -> tuple[str, str]:
    return ORIENTATION.get((kind.laterality, "CC" if kind.view == "XCCL" else kind.view), ("A",))


def _plan_images(
    rng: np.random.Generator, seed: int, exams: list[Exam], scale: float, dbt_frames: int
) -> list[PlannedImage]:
    kinds = [(exam, kind) for exam in exams for kind in _exam_rows(exam, dbt_frames)]
    kinds += [(exams[index], kind) for index, kind in EXTRA_ROWS]
    kinds.sort(key=lambda pair: pair[0].index)
    images = []
    for index, (exam, kind) in enumerate(kinds):
        size = _scaled(kind.size, scale)
        drawn = kind.file_state is FileState.WRITTEN
        images.append(
            PlannedImage(
                exam=exam,
                index=index,
                image_type=kind.image_type,
                laterality=kind.laterality,
                view=kind.view,
                size=size,
                frames=kind.frames,
                series_uid=_uid(seed, exam.acc, index, "series"),
                sop_uid=_uid(seed, exam.acc, index, "sop"),
                shape=BreastShape.random(
                    rng, *size, kind.view, _standard_orientation(kind)[0] == "P"
                )
                if drawn
                else None,
                spot_mag=kind.spot_mag,
                file_state=kind.file_state,
                pixels=exam.spec.pixels,
            )
        )
    return images


# ---- ROIs ----------------------------------------------------------------------------


def _frame_run(rng: np.random.Generator, n_frames: int, length: int | None = None) -> list[int]:
    """Consecutive 0-based frames where a DBT lesion is drawn."""
    length = int(rng.integers(1, 6)) if length is None else length
    start = int(rng.integers(0, n_frames - length + 1))
    return list(range(start, start + length))


def _set_lesions(
    img: PlannedImage, rng: np.random.Generator, boxes: list[phantom.Box], run: int | None = None
) -> None:
    """Draw lesions in `boxes` and list them, in order, in the row's ROI cells."""
    dbt = img.image_type == "3D"
    img.lesions = [
        Lesion(
            box,
            float(rng.uniform(*phantom.LESION_AMPLITUDE)),
            tuple(_frame_run(rng, img.frames, run)) if dbt else (),
        )
        for box in boxes
    ]
    img.coords = [list(box) for box in boxes]
    img.frame_lists = [list(lesion.frames) for lesion in img.lesions] if dbt else []


def _give_rois(
    img: PlannedImage, rng: np.random.Generator, count: int, run: int | None = None
) -> None:
    boxes: list[phantom.Box] = []
    for _ in range(count):
        boxes.append(img.shape.inner_box(rng, avoid=tuple(boxes)))
    _set_lesions(img, rng, boxes, run)


def _random_count(rng: np.random.Generator) -> int:
    return int(rng.choice(len(ROI_COUNT_P), p=ROI_COUNT_P)) + 1


# ---- odd cases: one image each ---------------------------------------------------------


def _reject(reason: RoiReason, roi_index: int, note: str, count: int = 1, **changes) -> Callable:
    """A case: `count` valid ROIs, then `changes` applied to the row, flagged as rejected."""

    def apply(img: PlannedImage, rng: np.random.Generator) -> None:
        _give_rois(img, rng, count, run=3)
        for name, change in changes.items():
            setattr(img, name, change(img, rng) if callable(change) else change)
        img.flag("reject", reason, roi_index, note)

    return apply


def _first_box(edit: Callable[[list], list]) -> Callable:
    return lambda img, _rng: [edit(img.coords[0]), *img.coords[1:]]


def _clipped(img: PlannedImage, rng: np.random.Generator) -> None:
    overshoot = max(2, round(0.02 * img.size[1]))
    _set_lesions(img, rng, [img.shape.chest_wall_box(rng, overshoot)])
    img.flag("warn", RoiWarning.CLIPPED, 0, f"box crosses the chest-wall edge by {overshoot} px")


def _outside(img: PlannedImage, rng: np.random.Generator) -> None:
    _give_rois(img, rng, 1)
    ymin, xmin, ymax, xmax = img.coords[0]
    below = img.size[0] + 5 - ymin
    img.coords = [[ymin + below, xmin, ymax + below, xmax]]
    img.lesions = []
    img.flag("reject", RoiReason.OUTSIDE_IMAGE, 0, "box lies wholly below the image")


def _suspect_flip(img: PlannedImage, rng: np.random.Generator) -> None:
    shape = img.shape
    true_box = shape.inner_box(rng, max_depth=0.9 * (1 - shape.reach) * shape.cols)
    _set_lesions(img, rng, [true_box])
    img.coords = [list(Mirror.X.apply(true_box, shape.rows, shape.cols))]
    img.flag(
        "warn",
        RoiWarning.SUSPECT_FLIP,
        0,
        f"listed box is the x-mirror of the lesion at {list(true_box)}",
    )


def _suspect_flip_vertical(img: PlannedImage, rng: np.random.Generator) -> None:
    """An image stored upside down, its breast low in the frame, its box listed y-mirrored."""
    img.shape = shape = replace(img.shape, upside_down=True, centre=0.3)
    for _ in range(phantom.ATTEMPTS):
        true_box = shape.inner_box(rng)
        if shape.is_background(Mirror.Y.apply(true_box, shape.rows, shape.cols)):
            break
    else:
        raise RuntimeError("no lesion whose y-mirror is off the breast")
    _set_lesions(img, rng, [true_box])
    img.coords = [list(Mirror.Y.apply(true_box, shape.rows, shape.cols))]
    img.flag(
        "warn",
        RoiWarning.SUSPECT_FLIP,
        0,
        f"upside-down image; listed box is the y-mirror of the lesion at {list(true_box)}",
    )


def _axes_swapped(img: PlannedImage, rng: np.random.Generator) -> None:
    """A lesion low in a portrait image, its box listed as [xmin, ymin, xmax, ymax]: read as
    listed, most of it lies past the right edge."""
    shape = img.shape
    for _ in range(phantom.ATTEMPTS):
        box = shape.inner_box(rng)
        if box[0] < shape.cols and 2 * (shape.cols - box[0]) < box[2] - box[0]:
            break
    else:
        raise RuntimeError("no lesion low enough for the swapped-axes case")
    _set_lesions(img, rng, [box])
    img.coords = [list(swap_axes(box))]
    img.flag("warn", RoiWarning.SUSPECT_AXES_SWAPPED, 0, f"lesion at {list(box)} listed x first")


def _frames_on_2d(frame_lists: list[list[int]], expected: tuple) -> Callable:
    """ROIs on a 2D row whose ROI_frames holds `frame_lists`; `expected` is its truth
    record (kind, code, roi_index, note)."""

    def apply(img: PlannedImage, rng: np.random.Generator) -> None:
        _give_rois(img, rng, len(frame_lists))
        img.frame_lists = frame_lists
        img.flag(*expected)

    return apply


def _near_duplicate(img: PlannedImage, rng: np.random.Generator) -> None:
    box = img.shape.inner_box(rng, side=(0.1, 0.14))
    _set_lesions(img, rng, [box])
    shift = max(1, (box[3] - box[1]) // 25)
    img.coords = [list(box), [box[0] + shift, box[1], box[2] + shift, box[3]]]
    img.style = "tuple"
    img.flag(
        "warn", RoiWarning.NEAR_DUPLICATE, 1, f"second box is the first shifted {shift} px down"
    )


def _valid(where: str) -> Callable:
    """A hard negative for the flip check: a valid box at the chest wall or the skin line."""

    def apply(img: PlannedImage, rng: np.random.Generator) -> None:
        box = (
            img.shape.chest_wall_box(rng) if where == "chest wall" else img.shape.skin_line_box(rng)
        )
        _set_lesions(img, rng, [box])
        img.flag("valid", "", 0, f"valid box at the {where}; must not be flagged as flipped")

    return apply


def _filtered(reason: FilterReason, path: Callable[[PlannedImage], str], note: str) -> Callable:
    def apply(img: PlannedImage, rng: np.random.Generator) -> None:
        _give_rois(img, rng, 1)
        img.path_override = path(img)
        img.file_state = FileState.NONE
        img.flag("filtered", reason, -1, note)

    return apply


def _valid_rois(encoding: Encoding, count: int | None = None) -> Callable:
    """Ordinary ROIs (a random number unless `count`) on a file in `encoding`."""

    def apply(img: PlannedImage, rng: np.random.Generator) -> None:
        _give_rois(img, rng, count or _random_count(rng))
        img.encoding = encoding

    return apply


def _stored_as(pixels: PixelType, encoding: Encoding, count: int) -> Callable:
    """`count` ordinary ROIs on a file storing its values as `pixels`, in `encoding`."""

    def apply(img: PlannedImage, rng: np.random.Generator) -> None:
        _valid_rois(encoding, count)(img, rng)
        img.pixels = pixels

    return apply


def _no_rois(img: PlannedImage, rng: np.random.Generator) -> None:
    """A DBT row kept without ROIs (flagged with every such row later)."""


def _plain_2d(img: PlannedImage) -> bool:
    return (
        img.image_type == "2D"
        and not img.spot_mag
        and img.exam.spec.policy is DemoRois.RANDOM
        and img.exam.spec.vendor.photometric == "MONOCHROME2"
    )


def _plain_2d_right(img: PlannedImage) -> bool:
    return _plain_2d(img) and img.laterality == "R"


def _plain_2d_left(img: PlannedImage) -> bool:
    """Left images: their PNG is not mirrored, so both tables list the same boxes."""
    return _plain_2d(img) and img.laterality == "L"


def _plain_2d_left_cc(img: PlannedImage) -> bool:
    return _plain_2d_left(img) and img.view == "CC"


def _dbt(img: PlannedImage) -> bool:
    return img.image_type == "3D" and img.exam.spec.policy is DemoRois.RANDOM


def _monochrome1(img: PlannedImage) -> bool:
    return img.exam.spec.vendor.photometric == "MONOCHROME1"


def _exam_2d(pixels: PixelType) -> Callable[[PlannedImage], bool]:
    """2D rows of the exam whose every image stores its values as `pixels`."""
    return lambda img: img.image_type == "2D" and img.exam.spec.pixels is pixels


def _random_cview(img: PlannedImage) -> bool:
    return img.image_type == "cview" and img.exam.spec.policy is DemoRois.RANDOM


@dataclass(frozen=True)
class Case:
    """An odd case: which rows may carry it and how it edits the chosen row."""

    name: str
    accepts: Callable[[PlannedImage], bool]
    apply: Callable[[PlannedImage, np.random.Generator], None]


_ESCAPING = "../anon_dicom_staging/"

# Laterality-bound cases first so the others cannot use up their rows.
CASES = (
    Case("crosses_border", _plain_2d_right, _clipped),
    Case("chest_wall", _plain_2d_right, _valid("chest wall")),
    Case("skin_line", _plain_2d, _valid("skin line")),
    Case(
        "malformed_coords",
        _plain_2d,
        _reject(
            RoiReason.MALFORMED_COORDS,
            -1,
            "ROI_coords cut off mid-box",
            style="list",
            truncated_cell="coords",
        ),
    ),
    Case(
        "count_mismatch",
        _plain_2d,
        _reject(RoiReason.COUNT_MISMATCH, -1, "one box but num_ROI 2", num_roi=2),
    ),
    Case(
        "wrong_arity",
        _plain_2d,
        _reject(RoiReason.WRONG_ARITY, 0, "box with 3 values", coords=_first_box(lambda b: b[:3])),
    ),
    Case(
        "non_integer",
        _plain_2d,
        _reject(
            RoiReason.NON_INTEGER,
            0,
            "ymin is not an integer",
            coords=_first_box(lambda b: [b[0] + 0.5, *b[1:]]),
        ),
    ),
    Case(
        "inverted_box",
        _plain_2d,
        _reject(
            RoiReason.INVERTED_BOX,
            0,
            "ymin > ymax",
            coords=_first_box(lambda b: [b[2], b[1], b[0], b[3]]),
        ),
    ),
    Case(
        "empty_box",
        _plain_2d,
        _reject(
            RoiReason.EMPTY_BOX,
            0,
            "ymin == ymax",
            coords=_first_box(lambda b: [b[0], b[1], b[0], b[3]]),
        ),
    ),
    Case("outside_image", _plain_2d, _outside),
    Case(
        "frame_zero_on_2d",
        _plain_2d,
        _frames_on_2d(
            [[0], []],
            ("warn", RoiWarning.FRAMES_ON_2D, 0, "ROI_frames [[0], []]: frame 0, the only one"),
        ),
    ),
    Case(
        "frame_index_on_2d",
        _plain_2d,
        _frames_on_2d(
            [[0], [3]],
            ("reject", RoiReason.FRAMES_OUT_OF_RANGE, 1, "frame 3 on a single-frame image"),
        ),
    ),
    Case("axes_swapped", _plain_2d_left, _axes_swapped),
    Case(
        "image_missing",
        _plain_2d,
        _reject(RoiReason.IMAGE_MISSING, -1, "no file at the path", file_state=FileState.MISSING),
    ),
    Case(
        "image_garbage",
        _plain_2d,
        _reject(
            RoiReason.IMAGE_UNREADABLE,
            -1,
            "file holds random bytes, not DICOM",
            file_state=FileState.GARBAGE,
        ),
    ),
    Case(
        "image_truncated",
        _plain_2d,
        _reject(
            RoiReason.IMAGE_UNREADABLE,
            -1,
            "file cut in the middle of its pixel data",
            file_state=FileState.TRUNCATED,
        ),
    ),
    Case(
        "dimension_mismatch",
        _plain_2d,
        _reject(
            RoiReason.DIMENSION_MISMATCH,
            -1,
            "table has Rows and Columns swapped",
            table_size=lambda img, _rng: img.size[::-1],
        ),
    ),
    Case("suspect_flip", _plain_2d_left, _suspect_flip),
    Case("suspect_flip_vertical", _plain_2d_left_cc, _suspect_flip_vertical),
    Case("near_duplicate", _plain_2d, _near_duplicate),
    Case(
        "path_outside_root",
        _plain_2d,
        _filtered(
            FilterReason.PATH_OUTSIDE_ROOT,
            lambda img: SOURCE_PREFIX + _ESCAPING + img.relative_path,
            "anon_dicom_path climbs out of the image root with '..'",
        ),
    ),
    Case(
        "path_missing",
        _plain_2d,
        _filtered(FilterReason.PATH_MISSING, lambda img: "", "anon_dicom_path empty"),
    ),
    Case("jpeg2000_2d_a", _plain_2d, _valid_rois(Encoding.JPEG2000_LOSSLESS)),
    Case("jpeg2000_2d_b", _plain_2d, _valid_rois(Encoding.JPEG2000_LOSSLESS)),
    Case("rle_2d", _plain_2d, _valid_rois(Encoding.RLE_LOSSLESS)),
    Case("jpegls_2d", _plain_2d, _valid_rois(Encoding.JPEGLS_LOSSLESS)),
    Case(
        "malformed_frames",
        _dbt,
        _reject(
            RoiReason.MALFORMED_FRAMES, -1, "ROI_frames cut off mid-list", truncated_cell="frames"
        ),
    ),
    Case(
        "frames_out_of_range",
        _dbt,
        _reject(
            RoiReason.FRAMES_OUT_OF_RANGE,
            0,
            "frame list runs past the last frame",
            frame_lists=lambda img, _rng: [img.frame_lists[0] + [img.frames, img.frames + 1]],
        ),
    ),
    Case(
        "frames_missing",
        _dbt,
        _reject(RoiReason.FRAMES_MISSING, 0, "3D row with a box but ROI_frames []", frame_lists=[]),
    ),
    Case(
        "frames_length_mismatch",
        _dbt,
        _reject(
            RoiReason.FRAMES_LENGTH_MISMATCH,
            -1,
            "two boxes, one frame list",
            count=2,
            frame_lists=lambda img, _rng: img.frame_lists[:1],
        ),
    ),
    Case("jpeg2000_dbt", _dbt, _valid_rois(Encoding.JPEG2000_LOSSLESS, count=2)),
    Case("dbt_without_roi", _dbt, _no_rois),
    Case("monochrome1", _monochrome1, _valid_rois(Encoding.UNCOMPRESSED, count=2)),
    # Other pixel types: a signed exam (one image big-endian), an 8-bit exam, and a
    # signed C-view among unsigned images (its exam's patches: their common dtype, int32).
    Case("signed_2d", _exam_2d(PixelType.INT16), _valid_rois(Encoding.BIG_ENDIAN, count=2)),
    Case("eight_bit_2d", _exam_2d(PixelType.UINT8), _valid_rois(Encoding.UNCOMPRESSED, count=2)),
    Case("signed_cview", _random_cview, _stored_as(PixelType.INT16, Encoding.UNCOMPRESSED, 1)),
)


def _assign_cases(rng: np.random.Generator, images: list[PlannedImage]) -> None:
    order = [images[i] for i in rng.permutation(len(images))]
    for case in CASES:
        img = next((im for im in order if im.case is None and case.accepts(im)), None)
        if img is None:
            raise ValueError(f"demo cohort too small to hold case '{case.name}'")
        img.case = case.name
        case.apply(img, rng)


def _assign_findings(
    rng: np.random.Generator, exams: list[Exam], images: list[PlannedImage]
) -> None:
    """Ordinary ROIs on images of exam sides that carry a finding; one on each spot view."""
    sides = [{side for side in "LR" if rng.random() < FINDING_SIDE_P} for _ in exams]
    for img in images:
        if img.case is not None or img.exam.spec.policy is not DemoRois.RANDOM:
            continue
        if img.spot_mag:
            _give_rois(img, rng, 1)
        elif img.laterality in sides[img.exam.index] and rng.random() < ROI_P.get(
            img.image_type, 0
        ):
            _give_rois(img, rng, _random_count(rng))


def _assign_styles(rng: np.random.Generator, images: list[PlannedImage]) -> None:
    """Serializations: current lists mostly, older tuples; empties as [], () or missing."""
    empties = [img for img in images if not img.coords]
    drawn = rng.choice(len(EMPTY_STYLES), size=len(empties), p=(0.5, 0.25, 0.25))
    drawn[: len(EMPTY_STYLES)] = range(len(EMPTY_STYLES))  # every empty form at least once
    for img, choice in zip(empties, drawn, strict=True):
        img.style = EMPTY_STYLES[choice] or "list"
        if EMPTY_STYLES[choice] is None:
            img.coords = img.frame_lists = None
    for img in images:
        if img.style is None:
            img.style = "tuple" if rng.random() < 0.3 else "list"


def _filter_truth(img: PlannedImage) -> None:
    """Expectations for rows the metadata filter drops by their type alone."""
    if img.image_type not in ("2D", "cview", "3D"):
        img.flag("filtered", FilterReason.IMAGE_TYPE, -1, f"FinalImageType {img.image_type}")
    elif img.spot_mag:
        img.flag("filtered", FilterReason.SPOT_MAG, -1, "spot compression / magnification view")
    elif img.image_type == "3D" and not img.coords:
        img.flag("filtered", FilterReason.DBT_WITHOUT_ROI, -1, "3D row with num_ROI 0")


def plan_cohort(*, seed: int, n_patients: int, scale: float, dbt_frames: int) -> Plan:
    """Everything about the cohort except pixels, drawn from `seed`."""
    if n_patients < MIN_PATIENTS or not 0 < scale <= 1 or dbt_frames < 8:
        raise ValueError("demo cohort needs n_patients >= 4, 0 < scale <= 1, dbt_frames >= 8")
    rng = np.random.default_rng(seed)
    exams = _plan_exams(rng, seed, n_patients)
    images = _plan_images(rng, seed, exams, scale, dbt_frames)
    _assign_cases(rng, images)
    _assign_findings(rng, exams, images)
    _assign_styles(rng, images)
    for img in images:
        _filter_truth(img)
    return Plan(exams, images)


# ---- tables --------------------------------------------------------------------------


def _serialize(value: list | None, style: str) -> str | None:
    """A list of lists as EMBED stores it: '[[1, 2], [3]]' or the older '((1, 2), (3,))'."""
    if value is None:
        return None
    if style == "tuple":
        return repr(tuple(tuple(item) for item in value))
    return repr(value)


def _cut(text: str) -> str:
    """The serialized value cut off before its last number, as a truncated export would."""
    return re.sub(r",\s*[-\d.]+\D*$", "", text)


def _png_space(img: PlannedImage) -> list[list] | None:
    """The row's boxes in the maintainers' PNG space (entries without 4 values as they are)."""
    if img.coords is None or img.shape is None:
        return img.coords
    mirror, rows, cols = img.png_mirror, img.shape.rows, img.shape.cols
    return [list(mirror.apply(box, rows, cols)) if len(box) == 4 else box for box in img.coords]


def _roi_cells(img: PlannedImage, style: str, legacy: bool) -> tuple[str | None, str | None]:
    boxes = _png_space(img) if legacy else img.coords
    coords, frames = _serialize(boxes, style), _serialize(img.frame_lists, style)
    if img.truncated_cell == "coords":
        coords = _cut(coords)
    if img.truncated_cell == "frames":
        frames = _cut(frames)
    return coords, frames


def _metadata_row(img: PlannedImage, legacy: bool) -> dict:
    exam, vendor = img.exam, img.exam.spec.vendor
    coords, frames = _roi_cells(img, "tuple" if legacy else img.style, legacy)
    rows, cols = img.table_size or img.size
    dicom = img.image_type in ("2D", "cview", "3D")
    orientation = _orientation(img)
    return {
        "empi_anon": exam.empi,
        "acc_anon": exam.acc,
        "study_date_anon": exam.study_date.isoformat(),
        "StudyDescription": exam.description,
        "SeriesDescription": _series_description(img),
        "FinalImageType": img.image_type,
        "ImageLateralityFinal": img.laterality,
        "ViewPosition": img.view,
        "spot_mag": 1.0 if img.spot_mag else math.nan,
        "ROI_coords": coords,
        "num_roi" if legacy else "num_ROI": (
            img.num_roi if img.num_roi is not None else len(img.coords or [])
        ),
        "ROI_frames": frames,
        "anon_dicom_path": img.table_path or None,
        "cohort_num": 1,
        "Manufacturer": vendor.name,
        "ManufacturerModelName": vendor.model,
        "Modality": "MG" if dicom else "OT",
        "BodyPartExamined": "BREAST",
        "PresentationIntentType": "FOR PRESENTATION" if dicom else None,
        "PhotometricInterpretation": vendor.photometric if dicom else "RGB",
        "BitsStored": img.pixels.bits_stored if dicom else 8,
        "PatientOrientation": str(orientation) if orientation else None,
        "Rows": rows,
        "Columns": cols,
        "ImagesInAcquisition": _images_in_acquisition(img),
        "WindowCenter": _window(img)[0] if dicom else math.nan,
        "WindowWidth": _window(img)[1] if dicom else math.nan,
        "LossyImageCompression": "00",
        "BreastImplantPresent": "NO",
    }


def _orientation(img: PlannedImage) -> tuple[str, str] | None:
    """PatientOrientation: columns run anterior from the chest wall (L) or towards it (R);
    rows reversed on an upside-down image."""
    upside_down = img.shape is not None and img.shape.upside_down
    key = (img.laterality, "CC" if img.view == "XCCL" else img.view)
    return (UPSIDE_DOWN if upside_down else ORIENTATION).get(key)


def _images_in_acquisition(img: PlannedImage) -> float:
    if img.image_type == "3D":
        return float(img.frames)
    return 1.0 if img.exam.spec.vendor is HOLOGIC and img.image_type == "2D" else math.nan


def _series_description(img: PlannedImage) -> str:
    if img.image_type == "ROI_SSC":
        return "ROI SSC"
    if img.image_type == "other":
        return "Patient Protocol"
    suffix = {"cview": " C-View", "3D": " Tomosynthesis Reconstruction"}.get(img.image_type, "")
    prefix = f"{img.laterality} SPOT MAG" if img.spot_mag else img.laterality
    return f"{prefix} {img.view}{suffix}"


def _window(img: PlannedImage) -> tuple[float, float]:
    """WindowCenter, WindowWidth in the file's stored values."""
    centre, width = phantom.WINDOW
    if img.exam.spec.vendor.photometric == "MONOCHROME1":
        centre = phantom.MAX_VALUE - centre
    return img.pixels.window(centre, width)


def metadata_table(plan: Plan, *, legacy: bool = False) -> pd.DataFrame:
    """The metadata table; `legacy` is the older release (num_roi, tuple strings, boxes in
    the maintainers' PNG space)."""
    return pd.DataFrame([_metadata_row(img, legacy) for img in plan.images])


@dataclass(frozen=True)
class _Finding:
    side: str | None
    asses: str


def _exam_findings(
    rng: np.random.Generator, roi_sides: list[str], *, as_bilateral: bool, doubled: bool
) -> list[_Finding]:
    """Findings consistent with the exam's ROI sides (mostly BI-RADS A where ROIs are).

    `as_bilateral`: two ROI sides reported as one finding on side B; `doubled`: a second
    finding on the one ROI side. Exams without ROIs are negative, side unknown (NaN).
    """
    if not roi_sides:
        return [_Finding(None, "N")]
    if as_bilateral:
        return [_Finding("B", "A")]
    findings = [_Finding(side, str(rng.choice(list("AAAAABP")))) for side in roi_sides]
    return [*findings, _Finding(roi_sides[0], "A")] if doubled else findings


def _finding_row(
    rng: np.random.Generator, exam: Exam, findings: list[_Finding], number: int
) -> dict:
    """The clinical row of the exam's finding `number` (1-based)."""
    finding = findings[number - 1]
    mass = finding.asses == "A" and rng.random() < 0.6
    calc = finding.asses == "A" and not mass
    severity = float(rng.choice([math.nan, math.nan, 0, 1, 2, 4, 5]))
    return {
        "empi_anon": exam.empi,
        "acc_anon": exam.acc,
        "study_date_anon": exam.study_date.isoformat(),
        "side": finding.side,
        "asses": finding.asses,
        "path_severity": severity if finding.asses == "A" else math.nan,
        "tissueden": exam.density,
        "desc": exam.description,
        "numfind": number,
        "total_L_find": sum(f.side in ("L", "B") for f in findings),
        "total_R_find": sum(f.side in ("R", "B") for f in findings),
        "massshape": str(rng.choice(list("ORIS"))) if mass else None,
        "calcfind": str(rng.choice(list("APL9"))) if calc else None,
        "age_at_study": exam.age,
    }


def _roi_sides(plan: Plan) -> list[list[str]]:
    """Per exam, the sorted lateralities of its rows that list or show ROIs."""
    sides: list[set[str]] = [set() for _ in plan.exams]
    for img in plan.images:
        if img.has_rois:
            sides[img.exam.index].add(img.laterality)
    return [sorted(exam_sides) for exam_sides in sides]


def clinical_table(plan: Plan, seed: int) -> pd.DataFrame:
    """One row per finding, consistent with where the ROIs are."""
    rng = np.random.default_rng([seed, 1])
    sides = _roi_sides(plan)
    bilateral = next((i for i, s in enumerate(sides) if len(s) == 2), None)
    unilateral = next((i for i, s in enumerate(sides) if len(s) == 1), None)
    rows = []
    for exam in plan.exams:
        findings = _exam_findings(
            rng,
            sides[exam.index],
            as_bilateral=exam.index == bilateral,
            doubled=exam.index == unilateral,
        )
        rows += [_finding_row(rng, exam, findings, n) for n in range(1, len(findings) + 1)]
    return pd.DataFrame(rows)


def truth_records(plan: Plan) -> list[dict]:
    """Every deliberately odd row or ROI, and the valid hard negatives, as plain dicts."""
    return [asdict(record) for img in plan.images for record in img.truth]


# ---- files ---------------------------------------------------------------------------


def _header(img: PlannedImage) -> DicomHeader:
    exam, vendor = img.exam, img.exam.spec.vendor
    return DicomHeader(
        sop_class_uid=BREAST_TOMOSYNTHESIS if img.image_type == "3D" else MAMMO_FOR_PRESENTATION,
        study_uid=exam.study_uid,
        series_uid=img.series_uid,
        sop_uid=img.sop_uid,
        patient_id=str(exam.empi),
        accession_number=str(exam.acc),
        study_date=exam.study_date.strftime("%Y%m%d"),
        study_description=exam.description,
        series_description=_series_description(img),
        series_number=img.index + 1,
        manufacturer=vendor.name,
        model=vendor.model,
        laterality=img.laterality,
        view_position=img.view,
        patient_orientation=_orientation(img),
        window=_window(img),
        photometric=vendor.photometric,
        pixel_type=img.pixels,
    )


def _pixels(img: PlannedImage, seed: int) -> np.ndarray:
    rng = np.random.default_rng([seed, 2, img.index])
    if img.image_type == "3D":
        return phantom.render_dbt(img.shape, img.lesions, img.frames, rng)
    return phantom.render_2d(img.shape, img.lesions, rng)


def _write_image(img: PlannedImage, images_dir: Path, seed: int) -> None:
    path = images_dir / img.relative_path
    if img.file_state is FileState.GARBAGE:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(np.random.default_rng([seed, 3, img.index]).bytes(4096))
        return
    write_dicom(path, _pixels(img, seed), _header(img), img.encoding)
    if img.file_state is FileState.TRUNCATED:
        data = path.read_bytes()
        path.write_bytes(data[: len(data) - img.size[0] * img.size[1]])


def _write_text(path: Path, text: str) -> None:
    """Write via a temporary name then rename, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text)
    temporary.replace(path)


def _csv(table: pd.DataFrame) -> str:
    return table.to_csv(index=False, lineterminator="\n")


def write_demo_cohort(
    out_dir: Path, *, seed: int, n_patients: int, scale: float, dbt_frames: int
) -> None:
    """Write the demo cohort below `out_dir`; tables/metadata.csv is written last."""
    started = time.perf_counter()
    out_dir = Path(out_dir)
    metadata_path = out_dir / "tables" / "metadata.csv"
    metadata_path.unlink(missing_ok=True)  # an interrupted rewrite must not look complete
    plan = plan_cohort(seed=seed, n_patients=n_patients, scale=scale, dbt_frames=dbt_frames)
    for img in plan.images:
        if img.file_state in (FileState.WRITTEN, FileState.GARBAGE, FileState.TRUNCATED):
            _write_image(img, out_dir / "images", seed)
    _write_text(out_dir / "tables" / "clinical.csv", _csv(clinical_table(plan, seed)))
    _write_text(out_dir / "tables" / "metadata_legacy.csv", _csv(metadata_table(plan, legacy=True)))
    _write_text(out_dir / "truth.json", json.dumps(truth_records(plan), indent=1) + "\n")
    _write_text(metadata_path, _csv(metadata_table(plan)))
    log.info(
        "demo cohort: %d patients, %d exams, %d image rows, %d truth records in %.1f s",
        n_patients,
        len(plan.exams),
        len(plan.images),
        sum(len(i.truth) for i in plan.images),
        time.perf_counter() - started,
    )
