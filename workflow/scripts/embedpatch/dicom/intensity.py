"""Pixel value transforms applied after reading: MONOCHROME1 inversion, VOI windowing."""

from __future__ import annotations

import numpy as np


def stored_range(dtype: np.dtype, bits_stored: int) -> tuple[int, int]:
    """Smallest and largest value of a `bits_stored`-bit integer of `dtype`'s signedness."""
    if np.dtype(dtype).kind == "i":
        return -(1 << bits_stored - 1), (1 << bits_stored - 1) - 1
    return 0, (1 << bits_stored) - 1


def invert_monochrome1(pixels: np.ndarray, bits_stored: int) -> np.ndarray:
    """MONOCHROME1 to MONOCHROME2 (tissue bright): mirror values in the Bits Stored range."""
    low, high = stored_range(pixels.dtype, bits_stored)
    return (low + high - np.clip(pixels, low, high)).astype(pixels.dtype)


def window_to_uint8(pixels: np.ndarray, center: float, width: float) -> np.ndarray:
    """DICOM linear VOI window (PS3.3 C.11.2.1.2.1) mapped to 0..255."""
    if width < 1:
        raise ValueError(f"window width must be >= 1, got {width}")
    values = pixels.astype(np.float64) - (center - 0.5)
    if width == 1:
        return np.where(values > 0, 255, 0).astype(np.uint8)
    scaled = np.clip(values / (width - 1) + 0.5, 0.0, 1.0) * 255.0
    return np.rint(scaled).astype(np.uint8)
