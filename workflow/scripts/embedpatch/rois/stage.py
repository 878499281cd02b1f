"""Stage 2: turn the filtered table's ROI strings into validated ROIs and recorded rejections.

Only rows whose ROI cells declare anything (rois.parse.declares_rois: a box, a count
other than 0, a frame list; the filter keeps 3D rows by the same rule) are looked at
further; their image's header gives the real bounds (no pixel data is read) and the
facts that say how the maintainers' PNG of it was mirrored (coordinate_space), which
maps boxes in PNG space to DICOM space. 2D / C-view images with accepted ROIs get the
wrong-side check on a downsampled view (flip_check), which also decides the space of
their boxes under `coordinate_space: auto`.
Every declared ROI ends up in exactly one of the two tables: `accepted` (one row per
ROI) or `rejected` (one row per ROI, or per image row when the whole row is refused;
`n_rois` says how many declared ROIs a rejection covers).
"""

from __future__ import annotations

import functools
import json
import logging
import sys
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

import pandas as pd

from embedpatch import geometry
from embedpatch.dicom import (
    ImageError,
    ImageHeader,
    ImageReader,
    read_header,
)
from embedpatch.dicom import codestream as dicom_codestream
from embedpatch.dicom import encapsulation as dicom_encapsulation
from embedpatch.dicom import frames as dicom_frames
from embedpatch.dicom import header as dicom_header
from embedpatch.dicom import reader as dicom_reader
from embedpatch.geometry import Mirror
from embedpatch.io import object_store
from embedpatch.io.atomic import atomic_output, write_json
from embedpatch.io.tables import frame_records
from embedpatch.logs import with_progress
from embedpatch.reasons import RETRIED_NEXT_RUN, RoiReason
from embedpatch.rois import columns as roi_columns
from embedpatch.rois import coordinate_space, flip_check
from embedpatch.rois import parse as roi_parse
from embedpatch.rois import validate as roi_validate
from embedpatch.rois.cache import OutcomeCache, fingerprint
from embedpatch.rois.columns import (
    ACCEPTED_COLUMNS,
    INPUT_COLUMNS,
    REJECTED_COLUMNS,
    ROW_CELLS,
    read_filtered,
    rows_with_roi_cells,
    warning_counts,
)
from embedpatch.rois.coordinate_space import COLUMN_SPACE, PngRule, Space, ViewFacts, png_mirror
from embedpatch.rois.flip_check import (
    FlipThresholds,
    TissueView,
    choose_space,
    flip_verdict,
    read_tissue_view,
)
from embedpatch.rois.parse import is_missing, parse_coords, parse_roi_count
from embedpatch.rois.validate import (
    AcceptedRoi,
    ImageBounds,
    ImageRoiResult,
    RoiRejection,
    RoiRow,
    ValidationPolicy,
    validate_image_rois,
)
from embedpatch.vocab import (
    COORDS_COLUMN,
    FLAT_TYPES,
    IDENTIFIERS,
    IMAGE_COLUMNS,
    LATERALITY,
    ROI_COORDS,
    ROI_COUNT,
    ROI_FRAMES,
    VIEW,
    WHOLE_ROW,
)

log = logging.getLogger(__name__)

OUTCOME_CODE = (
    roi_parse,
    roi_validate,
    roi_columns,
    geometry,
    coordinate_space,
    flip_check,
    dicom_header,
    dicom_encapsulation,
    dicom_codestream,
    dicom_frames,
    dicom_reader,
    sys.modules[__name__],
)
"""The modules whose code decides a row's outcome: a change to any starts the cache afresh."""


@dataclass(frozen=True)
class RoiSettings:
    """The `rois` config section: the validation policy, the space of ROI_coords and the
    wrong-side check's settings."""

    policy: ValidationPolicy
    coordinate_space: Space
    png_rule: PngRule
    flip_check: Literal["flag", "fix", "reject"]
    flip_downsample: int
    flip_thresholds: FlipThresholds

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> RoiSettings:
        """Settings from a validated `rois` section."""
        return cls(
            policy=ValidationPolicy(
                border=section["border"],
                near_duplicate_iou=section["near_duplicate_iou"],
                near_duplicate=section["near_duplicate"],
                axes_swapped=section["axes_swapped"],
                frames_on_2d=section["frames_on_2d"],
            ),
            coordinate_space=Space(section["coordinate_space"]),
            png_rule=PngRule(
                vertical=section["png_vertical_flip"],
                missing_orientation=section["png_flip_without_orientation"],
            ),
            flip_check=section["flip_check"],
            flip_downsample=section["flip_downsample"],
            flip_thresholds=FlipThresholds(
                box_max=section["flip_box_tissue_max"],
                mirror_min=section["flip_mirror_tissue_min"],
                lesion_margin=section["flip_lesion_margin"],
            ),
        )

    def space_of(self, row: Mapping[str, Any]) -> Space:
        """The space of a row's boxes: its coordinate column's, or coordinate_space."""
        return COLUMN_SPACE.get(row[COORDS_COLUMN], self.coordinate_space)


@dataclass(frozen=True)
class CheckedRoi:
    """An accepted ROI in DICOM space, the mirror that brought it there, and the outcome of
    the wrong-side check (2D / C-view only)."""

    roi: AcceptedRoi
    space: Space = Space.DICOM
    mapped_by: Mirror = Mirror.NONE
    suspect_flip: bool = False
    flip_fixed: bool = False
    mirror: Mirror | None = None
    box_tissue: float | None = None
    mirror_tissue: float | None = None
    box_contrast: float | None = None
    mirror_contrast: float | None = None


def _declared_without_image(row: Mapping[str, Any]) -> int:
    """How many ROIs a row declares, for rows whose image could not be read."""
    count = parse_roi_count(row[ROI_COUNT])
    if isinstance(count, int):
        return count
    return len(parse_coords(row[ROI_COORDS]).entries)


def check_flips(
    view: TissueView, placed: Placed, settings: RoiSettings, expected: Mirror = Mirror.NONE
) -> list[CheckedRoi]:
    """Run the wrong-side check on one 2D image's accepted ROIs; `expected` is the mirror
    its orientation suggests (the PNG mirror, for boxes read as DICOM space)."""
    checked = []
    for roi in placed.result.accepted:
        if roi.axes_swapped and not roi.axes_fixed:  # already explained; a mirror would not be
            checked.append(CheckedRoi(roi, placed.space, placed.mirror))
            continue
        verdict = flip_verdict(view, roi.box, settings.flip_thresholds, expected)
        fix = verdict.suspect and settings.flip_check == "fix"
        if fix:
            ymin, xmin, ymax, xmax = verdict.mirror.apply(roi.box, view.rows, view.columns)
            roi = replace(roi, ymin=ymin, xmin=xmin, ymax=ymax, xmax=xmax)
        checked.append(
            CheckedRoi(
                roi,
                placed.space,
                placed.mirror,
                verdict.suspect,
                fix,
                verdict.mirror,
                verdict.box.tissue,
                verdict.mirrored.tissue,
                verdict.box.contrast,
                verdict.mirrored.contrast,
            )
        )
    return checked


@dataclass(frozen=True)
class ImageOutcome:
    """Accepted and rejected ROIs of one image row, plus the image size when read."""

    declared: int
    accepted: list[CheckedRoi]
    rejected: list[RoiRejection]
    bounds: ImageBounds | None


def _whole_row(declared: int, reason: RoiReason, detail: str) -> ImageOutcome:
    return ImageOutcome(declared, [], [RoiRejection(WHOLE_ROW, reason, detail)], None)


def _roi_row(row: Mapping[str, Any]) -> RoiRow:
    return RoiRow(
        image_type=row["FinalImageType"],
        num_roi=row[ROI_COUNT],
        coords_text=row[ROI_COORDS],
        frames_text=row[ROI_FRAMES],
        table_rows=row["Rows"],
        table_columns=row["Columns"],
        table_frames=row["ImagesInAcquisition"],
    )


def _bounds(header: ImageHeader) -> ImageBounds:
    return ImageBounds(header.rows, header.columns, header.number_of_frames)


def _view_facts(header: ImageHeader, row: Mapping[str, Any]) -> ViewFacts:
    """The flip rule's inputs: the header's, the table's laterality and view when it has none."""
    return ViewFacts(
        patient_orientation=header.patient_orientation or None,
        laterality=header.image_laterality or _text(row[LATERALITY]),
        view=header.view_position or _text(row[VIEW]),
    )


def _text(value: object) -> str | None:
    return None if is_missing(value) else str(value)


@dataclass(frozen=True)
class Placed:
    """An image row's validation in the space its boxes were taken to be in."""

    result: ImageRoiResult
    space: Space  # DICOM or PNG
    mirror: Mirror  # what mapped the boxes to DICOM space
    png_mirror: Mirror  # the image's PNG mirror (what a box left in PNG space is off by)


def place_row_boxes(
    row: Mapping[str, Any],
    header: ImageHeader,
    settings: RoiSettings,
    view: Callable[[], TissueView] | None = None,
) -> Placed:
    """Validate a row's boxes in their space: DICOM as listed; PNG mapped by the image's
    PNG mirror; AUTO decided on the image's `view` (DICOM without one, as for DBT)."""
    space = settings.space_of(row)
    png = png_mirror(_view_facts(header, row), settings.png_rule)
    bounds, policy = _bounds(header), settings.policy
    as_listed = validate_image_rois(_roi_row(row), bounds, policy)
    if space is not Space.PNG and (space is Space.DICOM or png is Mirror.NONE or view is None):
        return Placed(as_listed, Space.DICOM, Mirror.NONE, png)
    mapped = validate_image_rois(_roi_row(row), bounds, policy, png)
    if space is Space.AUTO:
        boxes = [[roi.box for roi in result.accepted] for result in (as_listed, mapped)]
        if choose_space(view(), *boxes, settings.flip_thresholds).space is Space.DICOM:
            return Placed(as_listed, Space.DICOM, Mirror.NONE, png)
    return Placed(mapped, Space.PNG, png, png)


def _flip_outcome(
    checked: list[CheckedRoi], placed: Placed, bounds: ImageBounds, settings: RoiSettings
) -> ImageOutcome:
    """Apply the flip policy 'reject' to checked ROIs (flag and fix keep them)."""
    result = placed.result
    rejected = list(result.rejected)
    if settings.flip_check == "reject":
        rejected += [
            RoiRejection(
                c.roi.roi_index,
                RoiReason.SUSPECT_FLIP,
                f"box holds {c.box_tissue:.0%} tissue, its {c.mirror}-mirror {c.mirror_tissue:.0%}",
            )
            for c in checked
            if c.suspect_flip
        ]
        checked = [c for c in checked if not c.suspect_flip]
    return ImageOutcome(result.declared, checked, rejected, bounds)


def validate_row(
    row: Mapping[str, Any], settings: RoiSettings, dicom_root: str | None = None
) -> ImageOutcome:
    """Validate one image row's ROIs against its image; image problems refuse the row.

    3D images: the header alone. 2D / C-view: one open for the header and, when there
    are boxes to check or a space to decide, one downsampled read. With `dicom_root`, an
    image whose real path is outside it is refused (image_outside_root) before it is
    opened. An object replaced while read is read again from scratch once.
    """
    try:
        return object_store.reread_if_changed(lambda: _validate_image(row, settings, dicom_root))
    except ImageError as error:
        return _whole_row(_declared_without_image(row), error.reason, str(error))


def _validate_image(
    row: Mapping[str, Any], settings: RoiSettings, dicom_root: str | None
) -> ImageOutcome:
    """validate_row's reads of the image; ImageError for an image that cannot be used."""
    if row["FinalImageType"] not in FLAT_TYPES:
        header = read_header(row["dicom_path"], dicom_root)
        placed = place_row_boxes(row, header, settings)
        result = placed.result
        checked = [CheckedRoi(roi, placed.space, placed.mirror) for roi in result.accepted]
        return ImageOutcome(result.declared, checked, list(result.rejected), _bounds(header))
    with ImageReader(row["dicom_path"], dicom_root) as reader:
        view = functools.cache(lambda: read_tissue_view(reader, settings.flip_downsample))
        placed = place_row_boxes(row, reader.header, settings, view)
        # Boxes read as DICOM space are most likely off by the image's PNG mirror.
        expected = placed.png_mirror if placed.space is Space.DICOM else Mirror.NONE
        accepted = placed.result.accepted
        checked = check_flips(view(), placed, settings, expected) if accepted else []
        bounds = _bounds(reader.header)
    return _flip_outcome(checked, placed, bounds, settings)


def _accepted_fields(checked: CheckedRoi, bounds: ImageBounds) -> dict:
    """An accepted ROI's record, the row's identifiers left out (JSON-able)."""
    roi = checked.roi
    return {
        "roi_index": roi.roi_index,
        "ymin": roi.ymin,
        "xmin": roi.xmin,
        "ymax": roi.ymax,
        "xmax": roi.xmax,
        "frames": list(roi.frames),
        "rows": bounds.rows,
        "columns": bounds.columns,
        "n_frames": bounds.n_frames,
        "coords_space": str(checked.space),
        "flip_h": checked.mapped_by.flips_x,
        "flip_v": checked.mapped_by.flips_y,
        "clipped": roi.clipped,
        "near_duplicate_of": roi.near_duplicate_of,
        "axes_swapped": roi.axes_swapped,
        "axes_fixed": roi.axes_fixed,
        "frames_on_2d": roi.frames_on_2d,
        "suspect_flip": checked.suspect_flip,
        "flip_fixed": checked.flip_fixed,
        "mirror": None if checked.mirror is None else str(checked.mirror),
        "box_tissue": checked.box_tissue,
        "mirror_tissue": checked.mirror_tissue,
        "box_contrast": checked.box_contrast,
        "mirror_contrast": checked.mirror_contrast,
    }


def _rejected_fields(rejection: RoiRejection, declared: int) -> dict:
    """A rejection's record, the row's identifiers left out (JSON-able)."""
    return {
        "roi_index": rejection.roi_index,
        "reason": str(rejection.reason),
        "detail": rejection.detail,
        "n_rois": declared if rejection.roi_index == WHOLE_ROW else 1,
    }


def row_outcome(row: Mapping[str, Any], settings: RoiSettings, dicom_root: str | None) -> dict:
    """A row's outcome as plain records: the ROIs it declares, those accepted, those
    rejected (validate_row; identifiers left out)."""
    outcome = validate_row(row, settings, dicom_root)
    return {
        "declared": outcome.declared,
        "accepted": [_accepted_fields(c, outcome.bounds) for c in outcome.accepted],
        "rejected": [_rejected_fields(r, outcome.declared) for r in outcome.rejected],
    }


def _cacheable(outcome: dict) -> bool:
    """Store failures are tried again next run; every other outcome is the image's own."""
    return all(r["reason"] not in RETRIED_NEXT_RUN for r in outcome["rejected"])


@dataclass(frozen=True)
class RoiTables:
    """The stage's outputs: accepted ROIs, rejections and the accounting summary."""

    accepted: pd.DataFrame
    rejected: pd.DataFrame
    summary: dict


def _typed_accepted(records: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(records, columns=ACCEPTED_COLUMNS)
    return table.astype(
        {
            "roi_index": "int64",
            "ymin": "int64",
            "xmin": "int64",
            "ymax": "int64",
            "xmax": "int64",
            "rows": "int64",
            "columns": "int64",
            "n_frames": "int64",
            "coords_space": "string",
            "flip_h": "bool",
            "flip_v": "bool",
            "clipped": "bool",
            "near_duplicate_of": "Int64",
            "axes_swapped": "bool",
            "axes_fixed": "bool",
            "frames_on_2d": "bool",
            "suspect_flip": "bool",
            "flip_fixed": "bool",
            "mirror": "string",
            "box_tissue": "float64",
            "mirror_tissue": "float64",
            "box_contrast": "float64",
            "mirror_contrast": "float64",
        }
    )


def _typed_rejected(records: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(records, columns=REJECTED_COLUMNS)
    return table.astype({"roi_index": "int64", "n_rois": "int64"})


def build_roi_tables(
    filtered: pd.DataFrame,
    settings: RoiSettings,
    dicom_root: str | None = None,
    cache: OutcomeCache | None = None,
) -> RoiTables:
    """Validate the ROIs of every row of the filtered metadata table (images below
    `dicom_root` only, when given); rows whose image and cells are unchanged since the run
    that filled `cache` take their outcome from it."""
    candidates = filtered[rows_with_roi_cells(filtered)]
    log.info("%d of %d rows declare ROIs", len(candidates), len(filtered))
    accepted: list[dict] = []
    rejected: list[dict] = []
    rows_with_accepted = rows_all_rejected = declared = 0
    rows = frame_records(candidates, INPUT_COLUMNS)
    for row in with_progress(rows, "stage 2, ROI validation", "rows"):
        key = None
        if cache is not None:
            key = cache.key({name: row[name] for name in ROW_CELLS}, row["dicom_path"])
        outcome = None if cache is None else cache.get(key)
        if outcome is None:
            outcome = row_outcome(row, settings, dicom_root)
            if cache is not None and _cacheable(outcome):
                cache.put(key, outcome)
        identifiers = {name: row[name] for name in IDENTIFIERS}
        declared += outcome["declared"]
        accepted += [
            identifiers | {n: row[n] for n in IMAGE_COLUMNS} | a for a in outcome["accepted"]
        ]
        rejected += [identifiers | r for r in outcome["rejected"]]
        if outcome["accepted"]:
            rows_with_accepted += 1
        elif outcome["rejected"]:
            rows_all_rejected += 1
    tables = RoiTables(_typed_accepted(accepted), _typed_rejected(rejected), {})
    summary = _summary(tables, len(filtered), rows_with_accepted, rows_all_rejected, declared)
    if cache is not None:
        summary["cache"] = {"rows_reused": cache.reused, "rows_validated": cache.validated}
    return replace(tables, summary=summary)


def _summary(
    tables: RoiTables, rows_in: int, rows_with_accepted: int, rows_all_rejected: int, declared: int
) -> dict:
    accepted, rejected = tables.accepted, tables.rejected
    return {
        "rows_in": rows_in,
        "rows_with_accepted_rois": rows_with_accepted,
        "rows_all_rois_rejected": rows_all_rejected,
        "rows_without_rois": rows_in - rows_with_accepted - rows_all_rejected,
        "rois_declared": declared,
        "rois_accepted": len(accepted),
        "rois_rejected": int(rejected["n_rois"].sum()),
        "rejections_by_reason": dict(Counter(rejected["reason"]).most_common()),
        "warnings": warning_counts(accepted),
        "accepted_by_image_type": dict(Counter(accepted["FinalImageType"]).most_common()),
        "accepted_by_coords_space": dict(Counter(accepted["coords_space"]).most_common()),
    }


def run_roi_stage(
    filtered_path: str,
    accepted_path: str,
    rejected_path: str,
    summary_path: str,
    rois_config: Mapping[str, Any],
    dicom_root: str | None = None,
    cache_path: str | None = None,
) -> dict:
    """Read the filtered table, validate its ROIs and write the stage's three outputs.

    `dicom_root`: images whose real path (symlinks resolved) leaves it are refused.
    `cache_path`: the outcome cache (rois.cache) read and replaced; None: none.
    """
    filtered = read_filtered(filtered_path)
    settings = RoiSettings.from_config(rois_config)
    cache = None
    if cache_path is not None:
        code = fingerprint({"rois": rois_config, "dicom_root": dicom_root}, OUTCOME_CODE)
        cache = OutcomeCache(cache_path, code)
    tables = build_roi_tables(filtered, settings, dicom_root, cache)
    if cache is not None:
        cache.save()
    with atomic_output(accepted_path) as temporary:
        tables.accepted.to_parquet(temporary, index=False)
    with atomic_output(rejected_path) as temporary:
        tables.rejected.to_parquet(temporary, index=False)
    tables.summary["object_store"] = object_store.TRANSFER.as_dict()
    write_json(summary_path, tables.summary)
    log.info("ROI accounting: %s", json.dumps(tables.summary))
    return tables.summary
