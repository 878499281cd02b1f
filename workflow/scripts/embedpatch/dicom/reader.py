"""`ImageReader`: one DICOM image, frames and windows read on demand, never the whole volume."""

from __future__ import annotations

import os
from types import TracebackType

import numpy as np
from pydicom.uid import UID

from embedpatch.dicom.frames import (
    BitPackedFrames,
    DecodedFrames,
    FrameReader,
    Jpeg2000Frames,
    NativeFrames,
)
from embedpatch.dicom.header import ImageHeader, PixelLayout, read_layout
from embedpatch.io import object_store
from embedpatch.io.errors import ImageUnreadable
from embedpatch.io.source import ByteSource, LocalFile, PrefixedSource

Location = str | os.PathLike | ByteSource
"""A local path, an object store URL (s3://...), or an open ByteSource."""


def open_source(location: Location, root: str | os.PathLike | None = None) -> ByteSource:
    """A ByteSource for `location` (an open one is used as it is). With `root`, a local
    path whose real path is not below it, or a URL not below the root URL, is refused
    (ImageOutsideRoot)."""
    if isinstance(location, ByteSource):
        return location
    if object_store.is_url(location):
        return object_store.open_object(str(location), None if root is None else str(root))
    return LocalFile(location, root)


def _frames_for(source: ByteSource, layout: PixelLayout) -> FrameReader:
    header = layout.header
    grayscale = header.photometric_interpretation in ("MONOCHROME1", "MONOCHROME2")
    if header.samples_per_pixel != 1 or not grayscale:
        raise ImageUnreadable(
            f"{source.name}: {header.photometric_interpretation}, {header.samples_per_pixel} "
            "samples per pixel: only grayscale (MONOCHROME1 / MONOCHROME2) images are supported"
        )
    syntax = UID(header.transfer_syntax_uid)
    if not syntax.is_encapsulated:
        if header.bits_allocated % 8:
            return BitPackedFrames(source, layout)
        return NativeFrames(source, layout)
    if syntax.startswith("1.2.840.10008.1.2.4.9"):
        return Jpeg2000Frames(source, layout)
    return DecodedFrames(source, layout)


class ImageReader:
    """One open DICOM image: frames and windows read on demand, never the whole volume.

    Use as a context manager. Opening reads the header and, for encapsulated data,
    locates every frame (checking the items against the file's size); what cannot
    be read exactly is refused with ImageUnreadable. Every array returned is new and
    owned by the caller, with pydicom's dtype (native byte order) and values.
    """

    def __init__(self, location: Location, root: str | os.PathLike | None = None) -> None:
        self._source = open_source(location, root)
        self.path = self._source.name
        try:
            layout = read_layout(self._source)
            self.header: ImageHeader = layout.header
            self.dtype: np.dtype = layout.dtype
            self._frames = _frames_for(PrefixedSource(self._source, layout.prefix), layout)
        except BaseException:
            self._source.close()
            raise

    def _check_frame(self, frame: int) -> None:
        if not 0 <= frame < self.header.number_of_frames:
            raise IndexError(f"frame {frame} not in [0, {self.header.number_of_frames})")

    def frame(self, index: int) -> np.ndarray:
        """Frame `index` (0 for single-frame images) as a rows x columns array."""
        self._check_frame(index)
        return self._frames.frame(index)

    def region(self, frame_index: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Pixels [y0:y1, x0:x1] of one frame; the window must lie inside the image."""
        self._check_frame(frame_index)
        if not (0 <= y0 < y1 <= self.header.rows and 0 <= x0 < x1 <= self.header.columns):
            raise ValueError(
                f"window [{y0}:{y1}, {x0}:{x1}] is empty or outside the "
                f"{self.header.rows} x {self.header.columns} image"
            )
        return self._frames.region(frame_index, y0, y1, x0, x1)

    def downsampled(self, frame_index: int, factor: int) -> np.ndarray:
        """`frame(frame_index)[::factor, ::factor]`; native data reads only those rows.

        JPEG 2000 only: for a power-of-two factor the codestream has the wavelet levels for,
        OpenJPEG's reduced-resolution decode instead, of the same shape and dtype but
        low-pass (each value smoothed over the block around its pixel), and much cheaper
        than a whole decode. Raw, RLE and JPEG-LS frames are always strided.
        """
        self._check_frame(frame_index)
        if factor < 1:
            raise ValueError(f"downsampling factor must be >= 1, got {factor}")
        return self._frames.downsampled(frame_index, factor)

    def close(self) -> None:
        """Close the image; the reader cannot be used afterwards."""
        self._source.close()

    def __enter__(self) -> ImageReader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def read_header(location: Location, root: str | os.PathLike | None = None) -> ImageHeader:
    """The image attributes of `location`, read without reading any pixel data.

    Raises ImageMissing if there is no such file, ImageUnreadable if it is not a DICOM
    image the reader can use, ImageOutsideRoot if `root` is given and the file's real
    path is not below it.
    """
    source = open_source(location, root)
    try:
        return read_layout(source).header
    finally:
        source.close()
