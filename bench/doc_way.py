"""What a user writes from the EMBED ROI page alone: the baseline of bench_vs_doc.py.

Filter the table (3D rows with ROIs, and 2D rows), parse ROI_coords / ROI_frames with
ast.literal_eval, decode each image whole with pydicom, cut a tissue-padded and a
black-padded patch per ROI (per listed frame on DBT), and write one HDF5 file per exam
(uncompressed, the fastest choice).
No validation, no negatives, no figures: the least a user would do.

Usage: python bench/doc_way.py METADATA_CSV DICOM_ROOT SOURCE_PREFIX OUT_DIR [PATCH_SIZE]
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pydicom.pixels


def tissue_patch(image: np.ndarray, box: list[int], size: int) -> np.ndarray:
    """The size x size window centred on the box, shifted to stay inside the image."""
    y0, x0, y1, x1 = box
    top = min(max((y0 + y1) // 2 - size // 2, 0), max(image.shape[0] - size, 0))
    left = min(max((x0 + x1) // 2 - size // 2, 0), max(image.shape[1] - size, 0))
    return image[top : top + size, left : left + size]


def black_patch(image: np.ndarray, box: list[int], size: int) -> np.ndarray:
    """The box (centre-cropped to the patch when larger) centred on a zero patch."""
    y0, x0, y1, x1 = box
    if y1 - y0 > size:
        y0 = (y0 + y1) // 2 - size // 2
        y1 = y0 + size
    if x1 - x0 > size:
        x0 = (x0 + x1) // 2 - size // 2
        x1 = x0 + size
    patch = np.zeros((size, size), image.dtype)
    top, left = (size - (y1 - y0)) // 2, (size - (x1 - x0)) // 2
    patch[top : top + y1 - y0, left : left + x1 - x0] = image[y0:y1, x0:x1]
    return patch


def main() -> None:
    metadata, root, prefix, out = sys.argv[1:5]
    size = int(sys.argv[5]) if len(sys.argv) > 5 else 512
    table = pd.read_csv(metadata)
    keep = (table.FinalImageType == "2D") | ((table.FinalImageType == "3D") & (table.num_ROI > 0))
    Path(out).mkdir(parents=True, exist_ok=True)
    for acc, exam in table[keep].groupby("acc_anon"):
        patches = []
        for row in exam.itertuples():
            boxes = ast.literal_eval(row.ROI_coords)
            if not boxes:
                continue
            path = Path(root) / row.anon_dicom_path.removeprefix(prefix)
            pixels = pydicom.pixels.pixel_array(path)
            if row.FinalImageType == "3D":
                frame_lists = ast.literal_eval(row.ROI_frames)
                images = [
                    [pixels[frame] for frame in sorted(set(frames))] for frames in frame_lists
                ]
            else:
                images = [[pixels]] * len(boxes)
            for box, frames in zip(boxes, images, strict=True):
                for frame in frames:
                    patches.append(tissue_patch(frame, box, size))
                    patches.append(black_patch(frame, box, size))
        if patches:
            with h5py.File(Path(out) / f"{acc}.h5", "w") as shard:
                shard.create_dataset("patches", data=np.stack(patches))  # no filter: its fastest


if __name__ == "__main__":
    main()
