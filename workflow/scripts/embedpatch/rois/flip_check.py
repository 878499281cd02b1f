"""Wrong-side QC: is an ROI on background while a mirror of it lies on breast tissue?

Boxes stored in another pixel space (the maintainers' PNGs: embedpatch.rois.coordinate_space)
sit on the mirror image of their lesion: left-right, top-bottom or both. The check reads
one downsampled view of the image (tissue bright: MONOCHROME1 inverted) and measures, for
a box and for each of its mirrors, the share of it that is tissue and how much brighter
its tissue is than the tissue around it (a lesion). The same evidence decides, in
`rois.coordinate_space: auto`, whether an image's boxes are in DICOM or PNG space.

For JPEG 2000 images only, that view is OpenJPEG's reduced-resolution decode
(`ImageReader.downsampled`): low-pass, each cell roughly the mean of the pixels around
it, where raw, RLE and JPEG-LS images give every factor-th pixel; it costs a fraction of
a whole decode.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from embedpatch.dicom import ImageReader, invert_monochrome1
from embedpatch.geometry import Box, Mirror
from embedpatch.rois.coordinate_space import Space

TISSUE_LEVEL = 0.1
"""A pixel is tissue when brighter than this fraction of the way from the image's 1st to
its 99th percentile: mammogram backgrounds sit near the bottom of that range."""
CANDIDATES = (Mirror.X, Mirror.Y, Mirror.XY)
"""The mirrors a box is compared with."""


@dataclass(frozen=True)
class FlipThresholds:
    """Suspect a flip when the box holds at most `box_max` tissue and a mirror of it at
    least `mirror_min`. `lesion_margin`: in the space choice, a box on tissue both ways
    votes for the reading whose lesion contrast is higher by at least this much."""

    box_max: float = 0.25
    mirror_min: float = 0.6
    lesion_margin: float = 1.0


@dataclass(frozen=True)
class TissueView:
    """A downsampled, tissue-bright view of an image and its tissue mask."""

    values: np.ndarray  # float32
    mask: np.ndarray  # bool, same shape
    factor: int  # downsampling factor
    rows: int  # full-resolution size
    columns: int
    spread: float  # standard deviation of the tissue's values (0 without tissue)

    @classmethod
    def of(cls, view: np.ndarray, factor: int, rows: int, columns: int) -> TissueView:
        """The view of an image already downsampled by `factor` (tissue bright)."""
        values = np.asarray(view, dtype=np.float32)
        mask = tissue_mask(values)
        spread = float(values[mask].std()) if mask.any() else 0.0
        return cls(values, mask, factor, rows, columns, spread)

    def cells(self, box: Box) -> tuple[slice, slice]:
        """The view's cells a full-resolution box touches (clipped to the view)."""
        ymin, xmin, ymax, xmax = box
        f = self.factor
        return (
            slice(max(0, ymin // f), max(0, math.ceil(ymax / f))),
            slice(max(0, xmin // f), max(0, math.ceil(xmax / f))),
        )


def tissue_mask(image: np.ndarray) -> np.ndarray:
    """Boolean mask of breast tissue in a (downsampled, tissue-bright) image."""
    low, high = np.percentile(image, [1, 99])
    if high <= low:
        return np.zeros(image.shape, dtype=bool)
    return image > low + TISSUE_LEVEL * (high - low)


def tissue_view_mask(reader: ImageReader, factor: int) -> np.ndarray:
    """Tissue mask of frame 0 downsampled by `factor` (read_tissue_view's mask)."""
    return read_tissue_view(reader, factor).mask


def tissue_fraction(mask: np.ndarray, box: Box, factor: int) -> float:
    """Fraction of tissue in `box` (full-resolution coordinates) on a mask downsampled by
    `factor`; the box covers every mask cell it touches."""
    ymin, xmin, ymax, xmax = box
    cells = mask[
        ymin // factor : math.ceil(ymax / factor), xmin // factor : math.ceil(xmax / factor)
    ]
    return float(cells.mean()) if cells.size else 0.0


def read_tissue_view(reader: ImageReader, factor: int) -> TissueView:
    """Frame 0 of an image downsampled by `factor`, MONOCHROME1 inverted first."""
    view = reader.downsampled(0, factor)
    if reader.header.photometric_interpretation == "MONOCHROME1":
        view = invert_monochrome1(view, reader.header.bits_stored)
    return TissueView.of(view, factor, reader.header.rows, reader.header.columns)


@dataclass(frozen=True)
class BoxEvidence:
    """What a view shows inside a box."""

    tissue: float  # share of the box's cells on tissue (cells outside the image count as none)
    contrast: float  # mean of its tissue minus that of the tissue around it, in tissue SDs


def box_evidence(view: TissueView, box: Box) -> BoxEvidence:
    """Tissue share and lesion contrast of a full-resolution box on `view`."""
    ymin, xmin, ymax, xmax = box
    f = view.factor
    area = max(1, math.ceil(ymax / f) - ymin // f) * max(1, math.ceil(xmax / f) - xmin // f)
    inside = view.cells(box)
    tissue = view.mask[inside]
    share = min(1.0, float(tissue.sum()) / area)
    return BoxEvidence(share, _contrast(view, box, inside))


def _contrast(view: TissueView, box: Box, inside: tuple[slice, slice]) -> float:
    ymin, xmin, ymax, xmax = box
    margin = max(ymax - ymin, xmax - xmin) // 2
    around = view.cells((ymin - margin, xmin - margin, ymax + margin, xmax + margin))
    ring = view.mask[around].copy()  # the tissue around the box, the box's own cells left out
    top, left = around[0].start, around[1].start
    ring[
        inside[0].start - top : inside[0].stop - top, inside[1].start - left : inside[1].stop - left
    ] = False
    box_values = view.values[inside][view.mask[inside]]
    if not box_values.size or not ring.any() or view.spread == 0:
        return 0.0
    return float(box_values.mean() - view.values[around][ring].mean()) / view.spread


@dataclass(frozen=True)
class FlipVerdict:
    """A box's evidence, the mirror compared with it and whether that suggests a flip."""

    box: BoxEvidence
    mirror: Mirror  # the chosen mirror when suspect, else the one with the most tissue
    mirrored: BoxEvidence
    suspect: bool


def flip_verdict(
    view: TissueView, box: Box, thresholds: FlipThresholds, expected: Mirror = Mirror.NONE
) -> FlipVerdict:
    """Compare `box` with its mirrors. Among the mirrors on tissue, `expected` (the one the
    image's orientation suggests) wins, else the first in CANDIDATES order unless another
    shows a lesion brighter by `lesion_margin`."""
    own = box_evidence(view, box)
    evidence = {
        mirror: box_evidence(view, mirror.apply(box, view.rows, view.columns))
        for mirror in CANDIDATES
    }
    on_tissue = [m for m in CANDIDATES if evidence[m].tissue >= thresholds.mirror_min]
    if expected in on_tissue:
        chosen = expected
    elif on_tissue:
        brightest = max(on_tissue, key=lambda mirror: evidence[mirror].contrast)
        margin = evidence[brightest].contrast - evidence[on_tissue[0]].contrast
        chosen = brightest if margin >= thresholds.lesion_margin else on_tissue[0]
    else:
        chosen = max(CANDIDATES, key=lambda mirror: evidence[mirror].tissue)
    suspect = own.tissue <= thresholds.box_max and bool(on_tissue)
    return FlipVerdict(own, chosen, evidence[chosen], suspect)


@dataclass(frozen=True)
class SpaceChoice:
    """Which space an image's boxes were taken to be in, and the boxes' votes."""

    space: Space  # DICOM or PNG
    png_votes: (
        int  # boxes on background as listed and on tissue once mapped, or brighter once mapped
    )
    dicom_votes: int  # the other way round


def choose_space(
    view: TissueView, listed: Sequence[Box], mapped: Sequence[Box], thresholds: FlipThresholds
) -> SpaceChoice:
    """DICOM or PNG space for one image, from its boxes read as listed and mapped from PNG
    space: PNG only when more boxes vote for it than against it. A box votes for the
    reading that puts it on tissue when the other puts it on background, or, on tissue
    both ways, for the one showing a lesion brighter by `lesion_margin`."""
    png = dicom = 0
    for as_listed, as_mapped in zip(listed, mapped, strict=True):
        before, after = box_evidence(view, as_listed), box_evidence(view, as_mapped)
        png += _prefers(after, before, thresholds)
        dicom += _prefers(before, after, thresholds)
    return SpaceChoice(Space.PNG if png > dicom else Space.DICOM, png, dicom)


def _prefers(one: BoxEvidence, other: BoxEvidence, thresholds: FlipThresholds) -> bool:
    """Whether evidence `one` beats `other`: tissue against background, or a brighter lesion."""
    if one.tissue < thresholds.mirror_min:
        return False
    if other.tissue <= thresholds.box_max:
        return True
    both_on_tissue = other.tissue >= thresholds.mirror_min
    return both_on_tissue and one.contrast - other.contrast >= thresholds.lesion_margin
