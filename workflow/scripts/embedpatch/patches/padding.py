"""Square patches around an ROI: the EMBED doc's tissue and black padding, bugs fixed.

Boxes are (ymin, xmin, ymax, xmax) in DICOM pixel space, max exclusive (the doc
slices `img[ymin:ymax, xmin:xmax]`). Every patch is exactly (size, size) with the
image's dtype; whatever falls outside the image is zero. Geometry is computed
first (`tissue_placement`, `black_window`) so that `cut_patch` reads only the
in-image part of the window, e.g. through `ImageReader.region`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from embedpatch.geometry import Box, fit_start

RegionReader = Callable[[int, int, int, int], np.ndarray]
"""(y0, y1, x0, x1) -> image pixels [y0:y1, x0:x1]; called only with a window inside the image."""


@dataclass(frozen=True)
class Placement:
    """Image pixels [y0:y1, x0:x1] copied to the patch with (y0, x0) at (patch_y, patch_x).

    The window may extend past the image: that part of the patch stays zero.
    """

    y0: int
    x0: int
    y1: int
    x1: int
    patch_y: int = 0
    patch_x: int = 0


def _window_start(centre: int, extent: int, size: int) -> int:
    """Start of the doc's `size` window ending at centre + size // 2, moved inside [0, extent)."""
    return fit_start(centre + size // 2 - size, extent, size)


def tissue_window(box: Box, rows: int, columns: int, size: int) -> tuple[int, int]:
    """Top-left (y0, x0) of the size x size tissue-padding window around `box`.

    Centred on ((ymin + ymax) // 2, (xmin + xmax) // 2) as the doc's tissue_pad_patch
    does (the window ends at centre + size // 2, so for odd sizes the centre is one
    past the middle), then shifted to stay inside the image; 0 along a dimension
    where the image is smaller than `size` (the patch is zero beyond the image).
    """
    ymin, xmin, ymax, xmax = box
    y0 = _window_start((ymin + ymax) // 2, rows, size)
    x0 = _window_start((xmin + xmax) // 2, columns, size)
    return y0, x0


def tissue_placement(box: Box, rows: int, columns: int, size: int) -> Placement:
    """The tissue-padding window as a Placement at the patch's top-left corner."""
    y0, x0 = tissue_window(box, rows, columns, size)
    return Placement(y0, x0, y0 + size, x0 + size)


def _centre_crop(low: int, high: int, size: int) -> tuple[int, int]:
    """[low, high) cut to [centre - size // 2, + size) when longer, as the doc does.

    The doc ends the cut at centre + size // 2, one short for odd sizes, which
    leaves a zero last row or column; this cut fills it.
    """
    if high - low <= size:
        return low, high
    start = (low + high) // 2 - size // 2
    return start, start + size


def black_window(box: Box, size: int) -> Placement:
    """The black-padding Placement: the ROI, centre-cropped to `size`, centred on the patch."""
    ymin, xmin, ymax, xmax = box
    y0, y1 = _centre_crop(ymin, ymax, size)
    x0, x1 = _centre_crop(xmin, xmax, size)
    return Placement(y0, x0, y1, x1, (size - (y1 - y0)) // 2, (size - (x1 - x0)) // 2)


def cut_patch(
    read_region: RegionReader,
    placement: Placement,
    size: int,
    rows: int,
    columns: int,
    dtype: np.dtype,
) -> np.ndarray:
    """A zero (size, size) patch of `dtype` with the in-image part of the placement copied in.

    `read_region` is called at most once, with the window clipped to the image.
    """
    patch = np.zeros((size, size), dtype=dtype)
    y0, y1 = max(placement.y0, 0), min(placement.y1, rows)
    x0, x1 = max(placement.x0, 0), min(placement.x1, columns)
    if y0 < y1 and x0 < x1:
        top = placement.patch_y + y0 - placement.y0
        left = placement.patch_x + x0 - placement.x0
        patch[top : top + y1 - y0, left : left + x1 - x0] = read_region(y0, y1, x0, x1)
    return patch


def _array_reader(image: np.ndarray) -> RegionReader:
    return lambda y0, y1, x0, x1: image[y0:y1, x0:x1]


def tissue_pad(image: np.ndarray, box: Box, size: int) -> np.ndarray:
    """The doc's tissue_pad_patch on an in-memory 2D image, always (size, size)."""
    rows, columns = image.shape
    placement = tissue_placement(box, rows, columns, size)
    return cut_patch(_array_reader(image), placement, size, rows, columns, image.dtype)


def black_pad(image: np.ndarray, box: Box, size: int) -> np.ndarray:
    """The doc's black_pad_patch on an in-memory 2D image, always (size, size), dtype kept."""
    rows, columns = image.shape
    placement = black_window(box, size)
    return cut_patch(_array_reader(image), placement, size, rows, columns, image.dtype)
