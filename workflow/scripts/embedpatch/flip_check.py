"""Wrong-side QC: is an ROI on background while its x-mirror lies on breast tissue?

Some EMBED ROIs were stored in a horizontally flipped space: the box then sits on
the background beside the breast, and its mirror (x -> columns - x) on the lesion.
The check works on a downsampled view of the image (cheap to read) with tissue
bright (MONOCHROME1 images inverted by the caller).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from embedpatch.dicom import ImageReader, invert_monochrome1
from embedpatch.geometry import Box, mirror_box_x

# A pixel is tissue when brighter than this fraction of the way from the image's
# 1st to its 99th percentile: mammogram backgrounds sit near the bottom of that range.
TISSUE_LEVEL = 0.1


@dataclass(frozen=True)
class FlipThresholds:
    """Suspect a flip when the box holds at most `box_max` tissue and its mirror at least
    `mirror_min`."""

    box_max: float = 0.25
    mirror_min: float = 0.6


@dataclass(frozen=True)
class FlipVerdict:
    """Tissue fractions of a box and of its mirror, and whether that suggests a flip."""

    box_tissue: float
    mirror_tissue: float
    suspect: bool


def tissue_mask(image: np.ndarray) -> np.ndarray:
    """Boolean mask of breast tissue in a (downsampled, tissue-bright) image."""
    low, high = np.percentile(image, [1, 99])
    if high <= low:
        return np.zeros(image.shape, dtype=bool)
    return image > low + TISSUE_LEVEL * (high - low)


def tissue_view_mask(reader: ImageReader, factor: int) -> np.ndarray:
    """Tissue mask of frame 0 downsampled by `factor`, MONOCHROME1 inverted first."""
    view = reader.downsampled(0, factor)
    if reader.header.photometric_interpretation == "MONOCHROME1":
        view = invert_monochrome1(view, reader.header.bits_stored)
    return tissue_mask(view)


def tissue_fraction(mask: np.ndarray, box: Box, factor: int) -> float:
    """Fraction of tissue in `box` (full-resolution coordinates) on a mask downsampled by
    `factor`; the box covers every mask cell it touches."""
    ymin, xmin, ymax, xmax = box
    cells = mask[
        ymin // factor : math.ceil(ymax / factor), xmin // factor : math.ceil(xmax / factor)
    ]
    return float(cells.mean()) if cells.size else 0.0


def flip_verdict(
    mask: np.ndarray, box: Box, columns: int, factor: int, thresholds: FlipThresholds
) -> FlipVerdict:
    """Compare the tissue inside `box` with the tissue inside its x-mirror."""
    inside = tissue_fraction(mask, box, factor)
    mirrored = tissue_fraction(mask, mirror_box_x(box, columns), factor)
    suspect = inside <= thresholds.box_max and mirrored >= thresholds.mirror_min
    return FlipVerdict(box_tissue=inside, mirror_tissue=mirrored, suspect=suspect)
