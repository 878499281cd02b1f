"""An independent reference for patch pixels: pydicom's whole-image decode, then the
padding semantics restated in plain numpy (no embedpatch.patches.padding), for the tests."""

from collections.abc import Iterable
from functools import cache

import numpy as np
import pydicom
import pydicom.pixels


@cache
def decoded(path: str) -> np.ndarray:
    """The whole image as pydicom decodes it, (frames, rows, columns)."""
    pixels = pydicom.pixels.pixel_array(path)
    return pixels.reshape(-1, *pixels.shape[-2:])


def reference_dtype(paths: Iterable[str]) -> np.dtype:
    """The dtype of an exam's stored patches, from pydicom's decode of the images that gave
    patches: numpy's result type of theirs, native byte order (one image type: its own)."""
    return np.result_type(*(decoded(str(path)).dtype for path in paths)).newbyteorder("=")


def dicom_window(values: np.ndarray, centre: float, width: float) -> np.ndarray:
    """PS3.3 C.11.2.1.2.1 linear VOI window onto 0..255, rounded to nearest."""
    low, high = centre - 0.5 - (width - 1) / 2, centre - 0.5 + (width - 1) / 2
    scaled = ((values - (centre - 0.5)) / (width - 1) + 0.5) * 255
    return np.rint(np.where(values <= low, 0, np.where(values > high, 255, scaled)))


def reference_values(path: str, frame: int, mode: str) -> np.ndarray:
    """The frame's pixels in `mode`, from the whole-image decode."""
    image = decoded(path)[frame]
    dataset = pydicom.dcmread(path, stop_before_pixels=True)
    monochrome1 = dataset.PhotometricInterpretation == "MONOCHROME1"
    top = (1 << dataset.BitsStored) - 1
    if mode == "stored":
        return image
    if mode == "monochrome2":
        return (top - image).astype(image.dtype) if monochrome1 else image
    if "WindowCenter" in dataset:
        centre, width = float(dataset.WindowCenter), float(dataset.WindowWidth)
    else:
        centre, width = (top + 1) / 2, top + 1.0
    windowed = dicom_window(image.astype(np.float64), centre, width)
    return (255 - windowed if monochrome1 else windowed).astype(np.uint8)


def reference_origin(box, rows, columns, size, padding):
    """(y0, x0) of the image pixel at patch[0, 0], and the kept box (black: the cropped ROI)."""
    ymin, xmin, ymax, xmax = box
    if padding == "tissue":
        y0 = max(min((ymin + ymax) // 2 - size // 2, rows - size), 0)
        x0 = max(min((xmin + xmax) // 2 - size // 2, columns - size), 0)
        return (y0, x0), (y0, x0, y0 + size, x0 + size)
    if ymax - ymin > size:
        ymin = (ymin + ymax) // 2 - size // 2
        ymax = ymin + size
    if xmax - xmin > size:
        xmin = (xmin + xmax) // 2 - size // 2
        xmax = xmin + size
    top, left = (size - (ymax - ymin)) // 2, (size - (xmax - xmin)) // 2
    return (ymin - top, xmin - left), (ymin, xmin, ymax, xmax)


def reference_patch(values: np.ndarray, origin, kept, size: int) -> np.ndarray:
    """The size x size window at `origin`, zero outside the image and outside `kept`."""
    rows, columns = values.shape
    canvas = np.zeros((rows + 2 * size, columns + 2 * size), dtype=values.dtype)
    canvas[size : size + rows, size : size + columns] = values
    y0, x0 = origin
    patch = canvas[y0 + size : y0 + 2 * size, x0 + size : x0 + 2 * size].copy()
    ys, xs = np.arange(y0, y0 + size)[:, None], np.arange(x0, x0 + size)[None, :]
    inside = (ys >= kept[0]) & (ys < kept[2]) & (xs >= kept[1]) & (xs < kept[3])
    patch[~inside] = 0
    return patch
