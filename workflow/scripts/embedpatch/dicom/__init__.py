"""Reading DICOM images exactly: headers, frames and windows, never whole volumes.

Modules: `header` (the header and where Pixel
Data lies), `encapsulation` (where each compressed frame lies, checked), `codestream`
(a compressed frame checked whole and of the header's size before decoding), `frames` (one
reading strategy per storage kind, behind the FrameReader protocol), `openjpeg_region`
(a JPEG 2000 window decoded alone through OpenJPEG's decode area, and a view at reduced
resolution), `reader`
(ImageReader, read_header), `intensity` (MONOCHROME1 inversion, VOI windowing). The
bytes come from `embedpatch.io` (a local file or an object store); the errors, defined
there too, are re-exported here.

The names below are imported from their modules when first used (PEP 562): a process
that only needs the errors (every Snakemake process parsing the workflow, a batch job
whose shards are all current) does not import pydicom.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from embedpatch.dicom.header import MAX_FRAME_PIXELS, ImageHeader
    from embedpatch.dicom.intensity import invert_monochrome1, stored_range, window_to_uint8
    from embedpatch.dicom.reader import ImageReader, read_header
    from embedpatch.io.errors import (
        ImageError,
        ImageMissing,
        ImageOutsideRoot,
        ImageUnreadable,
    )

_MODULE_OF = {
    "ImageError": "embedpatch.io.errors",
    "ImageMissing": "embedpatch.io.errors",
    "ImageOutsideRoot": "embedpatch.io.errors",
    "ImageUnreadable": "embedpatch.io.errors",
    "MAX_FRAME_PIXELS": "embedpatch.dicom.header",
    "ImageHeader": "embedpatch.dicom.header",
    "invert_monochrome1": "embedpatch.dicom.intensity",
    "stored_range": "embedpatch.dicom.intensity",
    "window_to_uint8": "embedpatch.dicom.intensity",
    "ImageReader": "embedpatch.dicom.reader",
    "read_header": "embedpatch.dicom.reader",
}

__all__ = [
    "MAX_FRAME_PIXELS",
    "ImageError",
    "ImageHeader",
    "ImageMissing",
    "ImageOutsideRoot",
    "ImageReader",
    "ImageUnreadable",
    "invert_monochrome1",
    "read_header",
    "stored_range",
    "window_to_uint8",
]


def __getattr__(name: str) -> Any:
    if name not in _MODULE_OF:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_MODULE_OF[name]), name)
    globals()[name] = value
    return value
