"""Which pixel space a table's ROI boxes are in, and the mirror that brings them to DICOM's.

EMBED's documentation draws ROI_coords on the DICOM pixel array. Older tables held
them in the space of the PNGs written by the maintainers' DICOM-to-PNG notebook, which
mirrors an image by its own header: left-right when ``PatientOrientation[0]`` is ``P``,
and (computed, though that notebook applied only the left-right part) top-bottom for CC
views when the second orientation letter names the image's own side (``L`` on a left
image, ``R`` on a right one), for MLO / ML views when it is ``H``, or ``HL`` / ``HR``
for that side. Without the orientation tag it meant to mirror right CC / ML / MLO
images left-right, but its test for a missing tag is always true, so that branch never
ran. A mirror is its own inverse: the same mirror maps a PNG box back to DICOM space.

Where the coordinates come from is decided per table by its columns (vocab.COORDS_COLUMNS):
``DCM_ROI_coords`` (DICOM space), else ``ROI_coords`` (the space `rois.coordinate_space`
names), else ``PNG_ROI_coords`` (PNG space).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from embedpatch.geometry import Mirror
from embedpatch.vocab import DCM_ROI_COORDS, PNG_ROI_COORDS


class Space(StrEnum):
    """Where a box's coordinates live; AUTO decides per image from its pixels."""

    DICOM = "dicom"
    PNG = "png"
    AUTO = "auto"


COLUMN_SPACE = {DCM_ROI_COORDS: Space.DICOM, PNG_ROI_COORDS: Space.PNG}
"""The space a column's name states (ROI_coords states none: rois.coordinate_space)."""

_CC_VIEWS = frozenset({"CC"})
_OBLIQUE_VIEWS = frozenset({"MLO", "ML"})
_HEAD_FIRST = {"L": frozenset({"H", "HL"}), "R": frozenset({"H", "HR"})}


@dataclass(frozen=True)
class PngRule:
    """Which version of the maintainers' flip rule made the PNGs.

    `vertical`: apply the top-bottom flips the notebook computes (it applied only the
    left-right one). `missing_orientation`: on images without PatientOrientation, mirror
    right CC / ML / MLO images left-right as the notebook meant to (it did not).
    """

    vertical: bool = False
    missing_orientation: bool = False


@dataclass(frozen=True)
class ViewFacts:
    """What the flip rule reads from an image's header (laterality: the table's when the
    header has none)."""

    patient_orientation: tuple[str, ...] | None
    laterality: str | None
    view: str | None


def png_mirror(facts: ViewFacts, rule: PngRule = PngRule()) -> Mirror:
    """The mirror between an image's DICOM pixels and the maintainers' PNG of it."""
    orientation = facts.patient_orientation
    if orientation is None or len(orientation) < 2:
        right_view = facts.laterality == "R" and facts.view in _CC_VIEWS | _OBLIQUE_VIEWS
        return Mirror.of(x=rule.missing_orientation and right_view, y=False)
    columns_towards, rows_towards = orientation[0], orientation[1]
    if facts.view in _CC_VIEWS:
        upside_down = rows_towards == facts.laterality
    elif facts.view in _OBLIQUE_VIEWS:
        upside_down = rows_towards in _HEAD_FIRST.get(facts.laterality or "", ())
    else:
        return Mirror.NONE
    return Mirror.of(x=columns_towards == "P", y=rule.vertical and upside_down)


def parse_orientation(value: object) -> tuple[str, ...] | None:
    """PatientOrientation as a tuple of its values: from pydicom (a sequence of strings) or
    from a table cell like ``"('P', 'L')"`` or ``"P\\\\L"``; None when absent or empty."""
    if value is None:
        return None
    if isinstance(value, str):
        cleaned = value.strip().strip("()[]")
        parts = [part.strip().strip("'\"") for part in cleaned.replace("\\", ",").split(",")]
    elif isinstance(value, Sequence):
        parts = [str(part).strip() for part in value]
    else:
        return None
    parts = [part for part in parts if part]
    return tuple(parts) or None
