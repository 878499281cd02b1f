"""Reading DICOM images: headers, frames and windows, never whole volumes (public API)."""

from embedpatch.dicom_io import (
    ImageError,
    ImageHeader,
    ImageMissing,
    ImageOutsideRoot,
    ImageReader,
    ImageUnreadable,
    invert_monochrome1,
    read_downsampled,
    read_header,
    window_to_uint8,
)

__all__ = [
    "ImageError",
    "ImageHeader",
    "ImageMissing",
    "ImageOutsideRoot",
    "ImageReader",
    "ImageUnreadable",
    "invert_monochrome1",
    "read_downsampled",
    "read_header",
    "window_to_uint8",
]
