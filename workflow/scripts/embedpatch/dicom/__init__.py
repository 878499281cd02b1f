"""Reading DICOM images exactly: headers, frames and windows, never whole volumes.

Modules: `errors` (ImageError and its reason codes), `source` (byte sources: local
files; object stores in embedpatch.object_store), `header` (the header and where Pixel
Data lies), `encapsulation` (where each compressed frame lies, checked), `frames` (one
reading strategy per storage kind, behind the FrameReader protocol), `reader`
(ImageReader, read_header), `intensity` (MONOCHROME1 inversion, VOI windowing).
"""

from embedpatch.dicom.errors import ImageError, ImageMissing, ImageOutsideRoot, ImageUnreadable
from embedpatch.dicom.header import MAX_FRAME_PIXELS, ImageHeader
from embedpatch.dicom.intensity import invert_monochrome1, stored_range, window_to_uint8
from embedpatch.dicom.reader import ImageReader, read_header

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
