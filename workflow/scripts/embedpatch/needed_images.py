"""Which images a run will read: for users who download from the bucket first.

Stage 2 reads the header of every image whose row declares ROIs (and, for 2D /
C-view images, a downsampled view for the wrong-side check); stage 3 reads those
images again, and with `negatives_per_image > 0` every 2D / C-view image of the
filtered table. The list is decided from stage 1's table alone, before any image is
opened, so `aws s3 cp` or `s5cmd` can fetch exactly these objects.
"""

from __future__ import annotations

import logging

import pandas as pd

from embedpatch.atomic import atomic_output
from embedpatch.roi_table import read_filtered, rows_with_roi_cells
from embedpatch.vocab import DICOM_PATH, FLAT_TYPES, IMAGE_TYPE

log = logging.getLogger(__name__)


def needed_images(filtered: pd.DataFrame, negatives_per_image: int) -> list[str]:
    """The distinct locations (paths or URLs) of the images the run will read, sorted."""
    needed = rows_with_roi_cells(filtered)
    if negatives_per_image > 0:
        needed |= filtered[IMAGE_TYPE].isin(FLAT_TYPES)
    return sorted(set(filtered.loc[needed, DICOM_PATH].dropna()))


def write_needed_images(filtered_path: str, out_path: str, negatives_per_image: int) -> int:
    """Write one location per line to `out_path`; the number of images."""
    locations = needed_images(read_filtered(filtered_path), negatives_per_image)
    with atomic_output(out_path) as temporary:
        temporary.write_text("".join(f"{location}\n" for location in locations))
    log.info("%d images listed in %s", len(locations), out_path)
    return len(locations)
