"""Which images a run will read: for users who download from the bucket first.

Stage 2 reads the header of every image whose row declares ROIs (and, for 2D /
C-view images, a downsampled view for the wrong-side check); stage 3 reads those
images again, and with `negatives_per_image > 0` the 2D / C-view images without ROIs
that `patches.negative_images` chooses (embedpatch.patches.negative_images; its draws depend
on each image alone, so the list holds exactly the images stage 3 samples). The list is
decided from stage 1's table alone, before any image is opened, so `aws s3 cp` or
`s5cmd` can fetch exactly these objects.
"""

from __future__ import annotations

import logging

import pandas as pd
import pyarrow.parquet as pq

from embedpatch.io.atomic import atomic_output
from embedpatch.patches.negative_images import DEFAULT_CHOICE, NegativeChoice, sample_without_rois
from embedpatch.rois.columns import read_filtered, rows_with_roi_cells
from embedpatch.vocab import DICOM_PATH, FLAT_TYPES, IMAGE_TYPE

log = logging.getLogger(__name__)


def needed_images(
    filtered: pd.DataFrame,
    negatives_per_image: int,
    choice: NegativeChoice = DEFAULT_CHOICE,
    seed: int = 0,
) -> list[str]:
    """The distinct locations (paths or URLs) of the images the run will read, sorted."""
    with_rois = rows_with_roi_cells(filtered)
    needed = with_rois.copy()
    if negatives_per_image > 0:
        without = filtered[filtered[IMAGE_TYPE].isin(FLAT_TYPES) & ~with_rois]
        needed |= filtered.index.isin(sample_without_rois(without, choice, seed).index)
    return sorted(set(filtered.loc[needed, DICOM_PATH].dropna()))


def write_needed_images(
    filtered_path: str,
    out_path: str,
    negatives_per_image: int,
    choice: NegativeChoice = DEFAULT_CHOICE,
    seed: int = 0,
) -> int:
    """Write one location per line to `out_path`; the number of images."""
    filtered = read_filtered(filtered_path)
    extra = [name for name in choice.columns if name not in filtered.columns]
    if extra and negatives_per_image > 0:  # clinical labels the choice restricts on
        present = set(pq.read_schema(filtered_path).names)
        labels = [name for name in extra if name in present]
        filtered = filtered.join(
            pd.read_parquet(filtered_path, columns=labels, dtype_backend="numpy_nullable")
        )
    locations = needed_images(filtered, negatives_per_image, choice, seed)
    with atomic_output(out_path) as temporary:
        temporary.write_text("".join(f"{location}\n" for location in locations))
    log.info("%d images listed in %s", len(locations), out_path)
    return len(locations)
