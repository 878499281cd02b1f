"""Validate one image row's ROIs against the image's real size (pure, no I/O).

`validate_image_rois(row, bounds, policy)` parses the row's ROI cells and returns the
accepted ROIs and the rejections. Boxes are ``(ymin, xmin, ymax, xmax)``, maxima exclusive:
the ROI's pixels are ``img[ymin:ymax, xmin:xmax]``. The caller reads `bounds` from the
image header and handles missing or unreadable images itself.

Decisions:
- Row problems reject the whole row (one rejection, roi_index -1): when counts or frame
  lists disagree, which box goes with which frames or finding is unreliable. Only the
  first is reported, in this order: malformed_coords, count_mismatch (num_ROI unusable
  or not the number of boxes), malformed_frames, frames_on_2d (policy 'reject' only),
  frames_length_mismatch, dimension_mismatch.
- A missing num_ROI (None / NaN, e.g. a release without the column) is not checked:
  the boxes are the declaration.
- Frame lists on 2D / C-view rows (real tables have them, aligned with the boxes by
  position): an empty list is no frames; a list naming frame 0 only (the image's one
  frame) is accepted with the warning frames_on_2d; any other index refuses that ROI
  (frames_out_of_range). Policy frames_on_2d 'reject' refuses such rows whole instead,
  as the dataset's own ``assert roi_frames == []`` does.
- A 3D row whose ROI_frames is empty or missing gets frames_missing on each ROI.
- Table Rows / Columns are compared with the header on every row, ImagesInAcquisition
  on 3D rows only (a 2D header has no frame count to compare with). Missing table
  values are not compared.
- Per ROI the first failing check wins: non_integer / wrong_arity (parsing),
  inverted_box, empty_box, suspect_axes_swapped, outside_image, crosses_border (border
  'reject'; 'clip' clips instead), then non_integer / frames_missing (3D) /
  frames_out_of_range for its frames, then near_duplicate.
- Swapped axes: a box at least half outside the image as ``[ymin, xmin, ymax, xmax]``
  (SWAP_OUTSIDE_MIN; a box overshooting an edge by a little is a clipping case) but wholly
  inside it read as ``[xmin, ymin, xmax, ymax]`` is flagged (kept, clipped; refused as
  suspect_axes_swapped when it could not be kept as listed), read swapped (policy
  'fix') or refused (policy 'reject').
- `mirror` (coordinate_space: boxes in the maintainers' PNG space) maps each box to DICOM
  space after the swap check and before it is placed on the image; every check but the
  placement is the same in either space, since a mirror maps the image onto itself.
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

from embedpatch.geometry import (
    Box,
    Mirror,
    box_area,
    clip_box,
    inside_image,
    intersection,
    iou,
    swap_axes,
)
from embedpatch.reasons import RoiReason, RoiWarning
from embedpatch.rois.parse import (
    Parsed,
    Rejected,
    parse_coords,
    parse_frames,
    parse_roi_count,
    parse_table_int,
)
from embedpatch.vocab import DBT, IMAGE_TYPES, WHOLE_ROW

Policy = Literal["flag", "fix", "reject"]
SWAP_OUTSIDE_MIN = 0.5
"""Share of a box outside the image before swapped axes are suspected."""


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
    """How validation treats ROIs crossing the border, near-duplicate ROIs, boxes with
    swapped axes and frame lists on 2D rows (part of the `rois` config section:
    rois.stage.RoiSettings)."""

    border: Literal["clip", "reject"] = "clip"
    near_duplicate_iou: float = 0.7
    near_duplicate: Literal["flag", "drop"] = "flag"
    axes_swapped: Policy = "flag"
    frames_on_2d: Literal["frame_zero", "reject"] = "frame_zero"

    def __post_init__(self) -> None:
        choices = {
            "border": ("clip", "reject"),
            "near_duplicate": ("flag", "drop"),
            "axes_swapped": ("flag", "fix", "reject"),
            "frames_on_2d": ("frame_zero", "reject"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} {getattr(self, name)!r} not in {allowed}")
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
    axes_swapped: bool = False  # fits the image only read as [xmin, ymin, xmax, ymax]
    axes_fixed: bool = False  # ... and was read so (policy 'fix')
    frames_on_2d: bool = False  # a 2D / C-view ROI whose frame list named frame 0

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
            RoiWarning.SUSPECT_AXES_SWAPPED: self.axes_swapped,
            RoiWarning.AXES_FIXED: self.axes_fixed,
            RoiWarning.FRAMES_ON_2D: self.frames_on_2d,
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
    row: RoiRow,
    bounds: ImageBounds,
    policy: ValidationPolicy = ValidationPolicy(),
    mirror: Mirror = Mirror.NONE,
) -> ImageRoiResult:
    """Accepted ROIs and rejections for one image row, checked against its real size;
    `mirror` maps the row's boxes to the image's pixel space."""
    coords = parse_coords(row.coords_text)
    frames = parse_frames(row.frames_text)
    count = parse_roi_count(row.num_roi)
    declared = count if isinstance(count, int) else len(coords.entries)
    problem = next(_row_problems(row, bounds, policy, coords, frames, count), None)
    if problem is not None:
        rejection = RoiRejection(WHOLE_ROW, problem.reason, problem.detail)
        return ImageRoiResult(declared, (), (rejection,))
    outcomes = [
        _check_roi(index, box, _frames_of(index, frames), row, bounds, policy, mirror)
        for index, box in enumerate(coords.entries)
    ]
    accepted, rejected = _resolve_near_duplicates(outcomes, policy)
    return ImageRoiResult(declared, accepted, rejected)


def _row_problems(
    row: RoiRow,
    bounds: ImageBounds,
    policy: ValidationPolicy,
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
    if row.image_type != DBT and n_lists and policy.frames_on_2d == "reject":
        yield Rejected(
            RoiReason.FRAMES_ON_2D, f"{row.image_type} row has {n_lists} ROI_frames entries"
        )
    if n_lists and n_lists != n_boxes:
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


def _frames_of(index: int, frames: Parsed[tuple[int, ...]]) -> tuple[int, ...] | Rejected:
    """ROI `index`'s frame list (empty when ROI_frames is)."""
    return frames.entries[index] if frames.entries else ()


@dataclass(frozen=True)
class _Placement:
    """A box as it will be cut from the image, and how it got there."""

    box: Box
    clipped: bool
    axes_swapped: bool
    axes_fixed: bool


def _check_roi(
    index: int,
    box: Box | Rejected,
    frames: tuple[int, ...] | Rejected,
    row: RoiRow,
    bounds: ImageBounds,
    policy: ValidationPolicy,
    mirror: Mirror,
) -> AcceptedRoi | Rejected:
    if isinstance(box, Rejected):
        return box
    placed = _place_box(box, bounds, policy, mirror)
    if isinstance(placed, Rejected):
        return placed
    flat = row.image_type != DBT
    frame_set = _check_frames(frames, 1 if flat else bounds.n_frames, flat)
    if isinstance(frame_set, Rejected):
        return frame_set
    return AcceptedRoi(
        index,
        *placed.box,
        frames=frame_set,
        clipped=placed.clipped,
        axes_swapped=placed.axes_swapped,
        axes_fixed=placed.axes_fixed,
        frames_on_2d=flat and bool(frames),
    )


def _place_box(
    box: Box, bounds: ImageBounds, policy: ValidationPolicy, mirror: Mirror
) -> _Placement | Rejected:
    """The box as it will be cut from the image (swapped, mirrored, clipped as the policy
    and the space say), or why it cannot be."""
    ymin, xmin, ymax, xmax = box
    shown = f"box {list(box)}"
    size = f"height {ymax - ymin}, width {xmax - xmin}"
    if ymin > ymax or xmin > xmax:
        return Rejected(RoiReason.INVERTED_BOX, f"{shown}: {size}")
    if ymin == ymax or xmin == xmax:
        return Rejected(RoiReason.EMPTY_BOX, f"{shown}: {size}")
    rows, columns = bounds.rows, bounds.columns
    image = f"[0, {rows}) x [0, {columns})"
    swapped = _looks_swapped(box, rows, columns)
    clipped = clip_box(box, rows, columns)
    kept_as_listed = clipped is not None and (clipped == box or policy.border == "clip")
    refuse_swap = policy.axes_swapped == "reject" or not kept_as_listed
    if swapped and policy.axes_swapped != "fix" and refuse_swap:
        return Rejected(
            RoiReason.SUSPECT_AXES_SWAPPED,
            f"{shown} leaves {image}; read as [xmin, ymin, xmax, ymax] it lies inside",
        )
    fixed = swapped and policy.axes_swapped == "fix"
    placed = mirror.apply(swap_axes(box) if fixed else box, rows, columns)
    clipped = clip_box(placed, rows, columns)
    if clipped is None:
        return Rejected(RoiReason.OUTSIDE_IMAGE, f"{shown} has no pixel in {image}")
    if clipped != placed and policy.border == "reject":
        return Rejected(RoiReason.CROSSES_BORDER, f"{shown} crosses the border of {image}")
    return _Placement(clipped, clipped != placed, swapped, fixed)


def _looks_swapped(box: Box, rows: int, columns: int) -> bool:
    inside = box_area(intersection(box, (0, 0, rows, columns)))
    mostly_outside = inside <= (1 - SWAP_OUTSIDE_MIN) * box_area(box)
    return mostly_outside and inside_image(swap_axes(box), rows, columns)


def _check_frames(
    frames: tuple[int, ...] | Rejected, n_frames: int, flat: bool
) -> tuple[int, ...] | Rejected:
    """A 3D ROI's sorted, unique frames; () for a 2D / C-view ROI whose list is empty or
    names frame 0 only."""
    if isinstance(frames, Rejected):
        return frames
    if not frames and not flat:
        return Rejected(RoiReason.FRAMES_MISSING, "3D ROI without frame indices")
    outside = [frame for frame in frames if not 0 <= frame < n_frames]
    if outside:
        return Rejected(RoiReason.FRAMES_OUT_OF_RANGE, f"frame {outside[0]} not in [0, {n_frames})")
    return () if flat else tuple(sorted(set(frames)))


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
