"""Validate one image row's ROIs against the image's real size (pure, no I/O).

`validate_image_rois(row, bounds, policy)` parses the row's ROI cells and returns the
accepted ROIs and the rejections. Boxes are ``(ymin, xmin, ymax, xmax)``, maxima exclusive:
the ROI's pixels are ``img[ymin:ymax, xmin:xmax]``. The caller reads `bounds` from the
image header and handles missing or unreadable images itself.

Decisions:
- Row problems reject the whole row (one rejection, roi_index -1): when counts or frame
  lists disagree, which box goes with which frames or finding is unreliable. Only the
  first is reported, in this order: malformed_coords, count_mismatch (num_ROI unusable
  or not the number of boxes), malformed_frames, frames_on_2d, frames_length_mismatch,
  dimension_mismatch.
- A missing num_ROI (None / NaN, e.g. a release without the column) is not checked:
  the boxes are the declaration.
- frames_on_2d: any non-empty ROI_frames on a 2D / C-view row (even ``[[]]``), as the
  dataset's own ``assert roi_frames == []``. The frames can belong to no box, so the
  row is suspect (a DBT row typed 2D?) and rejected whole.
- A 3D row whose ROI_frames is empty or missing gets frames_missing on each ROI.
- Table Rows / Columns are compared with the header on every row, ImagesInAcquisition
  on 3D rows only (a 2D header has no frame count to compare with). Missing table
  values are not compared.
- Per ROI the first failing check wins: non_integer / wrong_arity (parsing),
  inverted_box, empty_box, outside_image, crosses_border (border 'reject'; 'clip'
  clips instead), then on 3D rows non_integer / frames_missing / frames_out_of_range
  for its frames, then near_duplicate.
- Near-duplicates compare clipped boxes with the earlier accepted boxes that are not
  near-duplicates themselves, and name the earliest match: policy 'flag' marks exactly
  the ROIs that policy 'drop' rejects.
- Every declared ROI is accepted or rejected exactly once, or the row carries one
  whole-row rejection: `ImageRoiResult` refuses to exist otherwise.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, replace
from typing import Literal

from embedpatch.geometry import Box, clip_box, iou
from embedpatch.reasons import RoiReason, RoiWarning
from embedpatch.roi_parse import (
    Parsed,
    Rejected,
    parse_coords,
    parse_frames,
    parse_roi_count,
    parse_table_int,
)
from embedpatch.vocab import DBT, IMAGE_TYPES, WHOLE_ROW


@dataclass(frozen=True)
class RoiRow:
    """The ROI-related cells of one metadata row, as read from the table (raw)."""

    image_type: str  # FinalImageType: "2D", "cview" or "3D"
    num_roi: object  # num_ROI / num_roi cell
    coords_text: object  # ROI_coords cell
    frames_text: object  # ROI_frames cell
    table_rows: object = None  # Rows cell
    table_columns: object = None  # Columns cell
    table_frames: object = None  # ImagesInAcquisition cell

    def __post_init__(self) -> None:
        if self.image_type not in IMAGE_TYPES:
            raise ValueError(f"image_type {self.image_type!r} not in {IMAGE_TYPES}")


@dataclass(frozen=True)
class ImageBounds:
    """The image's real size, from its DICOM header (n_frames 1 for 2D)."""

    rows: int
    columns: int
    n_frames: int = 1


@dataclass(frozen=True)
class ValidationPolicy:
    """How validation treats ROIs crossing the border and near-duplicate ROIs (part of the
    `rois` config section: roi_table.RoiSettings)."""

    border: Literal["clip", "reject"] = "clip"
    near_duplicate_iou: float = 0.7
    near_duplicate: Literal["flag", "drop"] = "flag"

    def __post_init__(self) -> None:
        if self.border not in ("clip", "reject"):
            raise ValueError(f"border {self.border!r} not 'clip' or 'reject'")
        if self.near_duplicate not in ("flag", "drop"):
            raise ValueError(f"near_duplicate {self.near_duplicate!r} not 'flag' or 'drop'")
        if not 0.0 <= self.near_duplicate_iou <= 1.0:
            raise ValueError(f"near_duplicate_iou {self.near_duplicate_iou} not in [0, 1]")


@dataclass(frozen=True)
class AcceptedRoi:
    """An ROI that passed validation, box clipped to the image if `clipped`."""

    roi_index: int
    ymin: int
    xmin: int
    ymax: int
    xmax: int
    frames: tuple[int, ...]  # sorted, unique; empty for 2D / C-view
    clipped: bool = False
    near_duplicate_of: int | None = None  # roi_index of the earlier box it nearly repeats

    @property
    def box(self) -> Box:
        """The box as ``(ymin, xmin, ymax, xmax)``."""
        return (self.ymin, self.xmin, self.ymax, self.xmax)

    @property
    def warnings(self) -> tuple[RoiWarning, ...]:
        """The warning codes this ROI carries."""
        flags = {
            RoiWarning.CLIPPED: self.clipped,
            RoiWarning.NEAR_DUPLICATE: self.near_duplicate_of is not None,
        }
        return tuple(code for code, raised in flags.items() if raised)


@dataclass(frozen=True)
class RoiRejection:
    """An ROI (roi_index >= 0) or a whole row (roi_index -1) that was refused."""

    roi_index: int
    reason: RoiReason
    detail: str


@dataclass(frozen=True)
class ImageRoiResult:
    """Outcome for one image row; every declared ROI is accounted for exactly once."""

    declared: int  # num_ROI when usable, else the number of parsed boxes
    accepted: tuple[AcceptedRoi, ...]
    rejected: tuple[RoiRejection, ...]

    def __post_init__(self) -> None:
        indices = sorted(
            [roi.roi_index for roi in self.accepted] + [rej.roi_index for rej in self.rejected]
        )
        if indices != ([WHOLE_ROW] if WHOLE_ROW in indices else list(range(self.declared))):
            raise ValueError(f"ROI accounting broken: {self.declared} declared, got {indices}")

    @property
    def whole_row_rejection(self) -> RoiRejection | None:
        """The row's rejection when the whole row was refused."""
        return next((rej for rej in self.rejected if rej.roi_index == WHOLE_ROW), None)


def validate_image_rois(
    row: RoiRow, bounds: ImageBounds, policy: ValidationPolicy = ValidationPolicy()
) -> ImageRoiResult:
    """Accepted ROIs and rejections for one image row, checked against its real size."""
    coords = parse_coords(row.coords_text)
    frames = parse_frames(row.frames_text)
    count = parse_roi_count(row.num_roi)
    declared = count if isinstance(count, int) else len(coords.entries)
    problem = next(_row_problems(row, bounds, coords, frames, count), None)
    if problem is not None:
        rejection = RoiRejection(WHOLE_ROW, problem.reason, problem.detail)
        return ImageRoiResult(declared, (), (rejection,))
    outcomes = [
        _check_roi(index, box, _frames_of(index, row, frames), bounds, policy)
        for index, box in enumerate(coords.entries)
    ]
    accepted, rejected = _resolve_near_duplicates(outcomes, policy)
    return ImageRoiResult(declared, accepted, rejected)


def _row_problems(
    row: RoiRow,
    bounds: ImageBounds,
    coords: Parsed[Box],
    frames: Parsed[tuple[int, ...]],
    count: int | Rejected | None,
) -> Iterator[Rejected]:
    """Whole-row problems in reporting order; each check assumes the earlier ones passed."""
    if coords.error is not None:
        yield coords.error
    n_boxes = len(coords.entries)
    if isinstance(count, Rejected):
        yield count
    elif count is not None and count != n_boxes:
        yield Rejected(RoiReason.COUNT_MISMATCH, f"{n_boxes} boxes in ROI_coords, num_ROI {count}")
    if frames.error is not None:
        yield frames.error
    n_lists = len(frames.entries)
    if row.image_type != DBT and n_lists:
        yield Rejected(
            RoiReason.FRAMES_ON_2D, f"{row.image_type} row has {n_lists} ROI_frames entries"
        )
    if row.image_type == DBT and n_lists and n_lists != n_boxes:
        yield Rejected(
            RoiReason.FRAMES_LENGTH_MISMATCH,
            f"{n_lists} frame lists in ROI_frames, {n_boxes} boxes in ROI_coords",
        )
    yield from _dimension_problems(row, bounds)


def _dimension_problems(row: RoiRow, bounds: ImageBounds) -> Iterator[Rejected]:
    checks = [("Rows", row.table_rows, bounds.rows), ("Columns", row.table_columns, bounds.columns)]
    if row.image_type == DBT:
        checks.append(("ImagesInAcquisition", row.table_frames, bounds.n_frames))
    for column, cell, actual in checks:
        value = parse_table_int(cell, column, RoiReason.DIMENSION_MISMATCH)
        if isinstance(value, Rejected):
            yield value
        elif value is not None and value != actual:
            yield Rejected(RoiReason.DIMENSION_MISMATCH, f"table {column} {value}, image {actual}")


def _frames_of(
    index: int, row: RoiRow, frames: Parsed[tuple[int, ...]]
) -> tuple[int, ...] | Rejected | None:
    """ROI `index`'s frame list on a 3D row (empty when ROI_frames is), None on 2D rows."""
    if row.image_type != DBT:
        return None
    return frames.entries[index] if frames.entries else ()


def _check_roi(
    index: int,
    box: Box | Rejected,
    frames: tuple[int, ...] | Rejected | None,
    bounds: ImageBounds,
    policy: ValidationPolicy,
) -> AcceptedRoi | Rejected:
    if isinstance(box, Rejected):
        return box
    placed = _place_box(box, bounds, policy)
    if isinstance(placed, Rejected):
        return placed
    frame_set = () if frames is None else _check_frames(frames, bounds.n_frames)
    if isinstance(frame_set, Rejected):
        return frame_set
    return AcceptedRoi(index, *placed, frames=frame_set, clipped=placed != box)


def _place_box(box: Box, bounds: ImageBounds, policy: ValidationPolicy) -> Box | Rejected:
    """The box as it will be cut from the image (clipped if allowed), or why it cannot be."""
    ymin, xmin, ymax, xmax = box
    shown = f"box {list(box)}"
    size = f"height {ymax - ymin}, width {xmax - xmin}"
    if ymin > ymax or xmin > xmax:
        return Rejected(RoiReason.INVERTED_BOX, f"{shown}: {size}")
    if ymin == ymax or xmin == xmax:
        return Rejected(RoiReason.EMPTY_BOX, f"{shown}: {size}")
    clipped = clip_box(box, bounds.rows, bounds.columns)
    image = f"[0, {bounds.rows}) x [0, {bounds.columns})"
    if clipped is None:
        return Rejected(RoiReason.OUTSIDE_IMAGE, f"{shown} has no pixel in {image}")
    if clipped != box and policy.border == "reject":
        return Rejected(RoiReason.CROSSES_BORDER, f"{shown} crosses the border of {image}")
    return clipped


def _check_frames(frames: tuple[int, ...] | Rejected, n_frames: int) -> tuple[int, ...] | Rejected:
    if isinstance(frames, Rejected):
        return frames
    if not frames:
        return Rejected(RoiReason.FRAMES_MISSING, "3D ROI without frame indices")
    outside = [frame for frame in frames if not 0 <= frame < n_frames]
    if outside:
        return Rejected(RoiReason.FRAMES_OUT_OF_RANGE, f"frame {outside[0]} not in [0, {n_frames})")
    return tuple(sorted(set(frames)))


def _resolve_near_duplicates(
    outcomes: list[AcceptedRoi | Rejected], policy: ValidationPolicy
) -> tuple[tuple[AcceptedRoi, ...], tuple[RoiRejection, ...]]:
    """Split outcomes into accepted and rejected, flagging or dropping near-duplicates."""
    originals: list[AcceptedRoi] = []
    accepted: list[AcceptedRoi] = []
    rejected: list[RoiRejection] = []
    for index, outcome in enumerate(outcomes):
        if isinstance(outcome, Rejected):
            rejected.append(RoiRejection(index, outcome.reason, outcome.detail))
            continue
        twin = _near_twin(outcome, originals, policy.near_duplicate_iou)
        if twin is None:
            originals.append(outcome)
            accepted.append(outcome)
            continue
        original, overlap = twin
        if policy.near_duplicate == "drop":
            detail = (
                f"IoU {overlap:.3f} with ROI {original.roi_index} > {policy.near_duplicate_iou}"
            )
            rejected.append(RoiRejection(index, RoiReason.NEAR_DUPLICATE, detail))
        else:
            accepted.append(replace(outcome, near_duplicate_of=original.roi_index))
    return tuple(accepted), tuple(rejected)


def _near_twin(
    roi: AcceptedRoi, originals: list[AcceptedRoi], threshold: float
) -> tuple[AcceptedRoi, float] | None:
    """The earliest original whose IoU with `roi` exceeds `threshold`, and that IoU."""
    for original in originals:
        overlap = iou(original.box, roi.box)
        if overlap > threshold:
            return original, overlap
    return None
