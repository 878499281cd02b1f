"""Negative windows: size x size windows on breast tissue, away from every known ROI.

A window is accepted when its centre (clipped into the image) lies on tissue, at
least MIN_TISSUE of it is tissue, it does not touch any avoid box grown by `margin`
on every side, and its IoU with every window already taken is below MAX_IOU. Tissue
comes from `flip_check.tissue_mask` on a downsampled, tissue-bright view of the
image. Candidates are drawn on tissue cells with a generator seeded from the run's
seed and the image's anon_dicom_path (CRC-32, never Python's salted hash()), so
every rerun and every process draws the same windows; after a bounded number of
attempts fewer windows than asked for are returned.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np

from embedpatch.geometry import Box, grow_box, iou, touches_any, window_around, window_box
from embedpatch.rois.flip_check import tissue_fraction

DOWNSAMPLE = 8  # factor of the view the tissue mask is computed on
ATTEMPTS_PER_WINDOW = 200
MIN_TISSUE = 0.5  # least tissue fraction of a window
MAX_IOU = 0.25  # windows of one image overlap each other less than this


def negative_rng(seed: int, anon_dicom_path: str) -> np.random.Generator:
    """The generator of one image's negative windows: same seed and path, same windows."""
    return np.random.default_rng([seed, zlib.crc32(anon_dicom_path.encode())])


def _centre_on_tissue(window: Box, mask: np.ndarray, factor: int, rows: int, columns: int) -> bool:
    ymin, xmin, ymax, xmax = window
    y = min((ymin + ymax) // 2, rows - 1)
    x = min((xmin + xmax) // 2, columns - 1)
    return bool(mask[y // factor, x // factor])


def _draw_centre(
    rng: np.random.Generator, cells: np.ndarray, mask_columns: int, factor: int
) -> tuple[int, int]:
    """A random full-resolution pixel of a random tissue cell."""
    cell = int(cells[rng.integers(len(cells))])
    offset_y, offset_x = (int(value) for value in rng.integers(factor, size=2))
    return (cell // mask_columns) * factor + offset_y, (cell % mask_columns) * factor + offset_x


def negative_windows(
    mask: np.ndarray,
    factor: int,
    rows: int,
    columns: int,
    size: int,
    count: int,
    avoid: Sequence[Box],
    margin: int,
    rng: np.random.Generator,
    attempts: int = ATTEMPTS_PER_WINDOW,
) -> list[tuple[int, int]]:
    """Top-left corners of up to `count` negative windows (see the module docstring).

    `mask` is the tissue mask of the rows x columns image downsampled by `factor`;
    at most `attempts` * `count` candidates are tried.
    """
    cells = np.flatnonzero(mask)
    blocked = [grow_box(box, margin) for box in avoid]
    taken: list[Box] = []
    for _ in range(attempts * count if len(cells) else 0):
        if len(taken) == count:
            break
        y, x = _draw_centre(rng, cells, mask.shape[1], factor)
        y0, x0 = window_around(min(y, rows - 1), min(x, columns - 1), rows, columns, size)
        window = window_box(y0, x0, size)
        if (
            _centre_on_tissue(window, mask, factor, rows, columns)
            and tissue_fraction(mask, window, factor) >= MIN_TISSUE
            and not touches_any(window, blocked)
            and all(iou(window, other) < MAX_IOU for other in taken)
        ):
            taken.append(window)
    return [(ymin, xmin) for ymin, xmin, _, _ in taken]
