"""Reading DICOM images exactly: headers, frames and windows, never whole volumes.

Modules: `errors` (ImageError and its reason codes), `source` (byte sources: local
files; object stores in embedpatch.object_store), `header` (the header and where Pixel
Data lies), `encapsulation` (where each compressed frame lies, checked), `codestream`
(a compressed frame checked whole and of the header's size before decoding), `frames` (one
reading strategy per storage kind, behind the FrameReader protocol), `reader`
(ImageReader, read_header), `intensity` (MONOCHROME1 inversion, VOI windowing).

The names below are imported from their modules when first used (PEP 562): a process
that only needs the errors (every Snakemake process parsing the workflow, a batch job
whose shards are all current) does not import pydicom.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from embedpatch.dicom.errors import (
        ImageError,
        ImageMissing,
        ImageOutsideRoot,
        ImageUnreadable,
    )
    from embedpatch.dicom.header import MAX_FRAME_PIXELS, ImageHeader
    from embedpatch.dicom.intensity import invert_monochrome1, stored_range, window_to_uint8
    from embedpatch.dicom.reader import ImageReader, read_header

_MODULE_OF = {
    "ImageError": "errors",
    "ImageMissing": "errors",
    "ImageOutsideRoot": "errors",
    "ImageUnreadable": "errors",
    "MAX_FRAME_PIXELS": "header",
    "ImageHeader": "header",
    "invert_monochrome1": "intensity",
    "stored_range": "intensity",
    "window_to_uint8": "intensity",
    "ImageReader": "reader",
    "read_header": "reader",
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
    value = getattr(importlib.import_module(f"{__name__}.{_MODULE_OF[name]}"), name)
    globals()[name] = value
    return value
