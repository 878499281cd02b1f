"""Frame-reading strategies: one per way pixels are stored, behind one interface.

Every strategy returns new arrays owned by the caller, of the image's dtype (the
one pydicom decodes to, native byte order) and exactly pydicom's values (but for
JPEG 2000's downsampled views, below):
- `NativeFrames`: uncompressed data; a window reads only its rows (one byte range
  per frame), a downsampled view only every factor-th row;
- `DecodedFrames`: encapsulated data (JPEG family, RLE, JPEG 2000); a frame's bytes
  (located by `FrameIndex`, checked against the header by `check_codestream`) are decoded alone by
  pydicom's decoder, and the output's shape and dtype are checked against the
  header; the last decoded frame is kept;
- `Jpeg2000Frames`: JPEG 2000 Lossless windows decoded alone (OpenJPEG's decode area,
  `openjpeg_region`), when the codestream's precision and signedness equal the
  header's (then the window is bit-exact with pydicom's frame); else as DecodedFrames.
  Views downsampled by a power of two are OpenJPEG's reduced-resolution decode when the
  codestream has the wavelet levels: a low-pass view, not the strided pixels.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder
from pydicom.pixels.utils import get_j2k_parameters
from pydicom.uid import UID, JPEG2000Lossless

import embedpatch.dicom.openjpeg_region as openjpeg_region
from embedpatch.dicom.codestream import check_codestream, j2k_decomposition_levels
from embedpatch.dicom.encapsulation import FrameIndex
from embedpatch.dicom.header import PixelLayout
from embedpatch.dicom.intensity import stored_range
from embedpatch.io.errors import ImageUnreadable, one_line
from embedpatch.io.source import ByteSource


class FrameReader(Protocol):
    """Frames of one image; every array is new, of the image's dtype, pydicom's values."""

    def frame(self, index: int) -> np.ndarray:
        """Frame `index` as a (rows, columns) array."""
        ...

    def region(self, index: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        """Pixels [y0:y1, x0:x1] of frame `index` (a window inside the image)."""
        ...

    def downsampled(self, index: int, factor: int) -> np.ndarray:
        """`frame(index)[::factor, ::factor]`'s shape and dtype; exactly those pixels but
        for JPEG 2000 (Jpeg2000Frames), whose views may be low-pass instead."""
        ...


def masked(pixels: np.ndarray, bits_stored: int) -> np.ndarray:
    """pydicom's correction for Bits Stored < Bits Allocated: unused high bits cleared
    (unsigned) or the sign bit extended (signed), in place."""
    unused = pixels.dtype.itemsize * 8 - bits_stored
    if unused <= 0:
        return pixels
    if pixels.dtype.kind == "u":
        np.bitwise_and(pixels, (1 << bits_stored) - 1, out=pixels)
    else:
        np.left_shift(pixels, unused, out=pixels)
        np.right_shift(pixels, unused, out=pixels)
    return pixels


class NativeFrames:
    """Uncompressed frames of 8, 16, 32 or 64 bits: only the rows needed are read.

    The last band of whole rows read is kept: a window inside it (the black-padded
    patch of an ROI after its tissue-padded one) reads nothing again.
    """

    def __init__(self, source: ByteSource, layout: PixelLayout) -> None:
        header = layout.header
        self._source = source
        self._header = header
        self._offset = layout.value_offset
        big_endian = not UID(header.transfer_syntax_uid).is_little_endian
        self._stored = layout.dtype.newbyteorder(">" if big_endian else "<")
        # 8-bit data in OW words of a big-endian file is stored byte-swapped in pairs
        self._swapped_bytes = big_endian and layout.vr == "OW" and header.bits_allocated == 8
        self._row_bytes = header.columns * layout.dtype.itemsize
        self._frame_bytes = header.native_length(1)
        self._dtype = layout.dtype
        self._band: tuple[int, range, np.ndarray] | None = None

    def _rows(self, index: int, rows: range) -> np.ndarray:
        """The given rows of frame `index`, whole width, native byte order and masked."""
        base = self._offset + index * self._frame_bytes
        if self._swapped_bytes:  # read whole word pairs: fetch the frame's byte span
            data = self._source.read(base, self._frame_bytes + (self._frame_bytes & 1))
            words = np.frombuffer(data, np.uint16).byteswap().view(np.uint8)
            pixels = words[: self._frame_bytes].reshape(self._header.rows, -1)[
                rows.start : rows.stop : rows.step
            ]
            return masked(pixels.copy(), self._header.bits_stored)
        if rows.step == 1:
            chunks = [
                self._source.read(base + rows.start * self._row_bytes, len(rows) * self._row_bytes)
            ]
        else:
            chunks = self._source.read_ranges(
                [(base + row * self._row_bytes, self._row_bytes) for row in rows]
            )
        stored = np.frombuffer(b"".join(chunks), self._stored).reshape(len(rows), -1)
        return masked(stored.astype(self._dtype), self._header.bits_stored)

    def frame(self, index: int) -> np.ndarray:
        return self._rows(index, range(self._header.rows))

    def region(self, index: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        if self._band is not None:
            frame, rows, pixels = self._band
            if frame == index and rows.start <= y0 and y1 <= rows.stop:
                return pixels[y0 - rows.start : y1 - rows.start, x0:x1].copy()
        rows = range(y0, y1)
        pixels = self._rows(index, rows)
        self._band = index, rows, pixels
        return pixels[:, x0:x1].copy()

    def downsampled(self, index: int, factor: int) -> np.ndarray:
        skipped = (factor - 1) * self._row_bytes
        if skipped > self._source.gap:  # each row read alone: only every factor-th row
            rows = self._rows(index, range(0, self._header.rows, factor))
            return np.ascontiguousarray(rows[:, ::factor])
        # The source would fetch the skipped rows anyway: read the frame as one band and
        # keep it, so that the windows cut next read nothing again.
        whole = self.region(index, 0, self._header.rows, 0, self._header.columns)
        return np.ascontiguousarray(whole[::factor, ::factor])


def _pixel_module(layout: PixelLayout, pixel_data: bytes, frames: int = 1) -> Dataset:
    """A dataset of `frames` frames holding `pixel_data` (as stored: encapsulated or not),
    with the image's pixel attributes."""
    header = layout.header
    dataset = Dataset()
    dataset.file_meta = FileMetaDataset()
    dataset.file_meta.TransferSyntaxUID = header.transfer_syntax_uid
    for keyword in ("PlanarConfiguration", "HighBit"):
        if keyword in layout.dataset:
            setattr(dataset, keyword, layout.dataset[keyword].value)
    dataset.Rows = header.rows
    dataset.Columns = header.columns
    dataset.SamplesPerPixel = header.samples_per_pixel
    dataset.BitsAllocated = header.bits_allocated
    dataset.BitsStored = header.bits_stored
    dataset.PixelRepresentation = header.pixel_representation
    dataset.PhotometricInterpretation = header.photometric_interpretation
    dataset.NumberOfFrames = frames
    dataset.PixelData = pixel_data
    dataset["PixelData"].VR = "OB"
    return dataset


class DecodedFrames:
    """Encapsulated frames, each decoded alone from its own bytes; the last one is kept."""

    def __init__(self, source: ByteSource, layout: PixelLayout) -> None:
        self._source = source
        self._layout = layout
        self._header = layout.header
        self._syntax = UID(layout.header.transfer_syntax_uid)
        self._index = FrameIndex(
            source, layout.dataset, layout.value_offset, layout.header.number_of_frames
        )
        self._cached: tuple[int, np.ndarray] | None = None

    def _is_cached(self, index: int) -> bool:
        return self._cached is not None and self._cached[0] == index

    def codestream(self, index: int) -> bytes:
        """Frame `index`'s encoded bytes, checked to be whole and of the header's size."""
        data = self._index.frame_bytes(index)
        check_codestream(data, self._header, f"{self._source.name}: frame {index}")
        return data

    def _decoded(self, index: int) -> np.ndarray:
        if not self._is_cached(index):
            self._cached = None  # free the previous frame before decoding the next one
            dataset = _pixel_module(self._layout, encapsulate([self.codestream(index)]))
            try:
                pixels, _ = get_decoder(self._syntax).as_array(dataset, index=0)
            except Exception as error:  # decoders raise many kinds on bad data
                raise self._unreadable(index, one_line(error)) from error
            expected = (self._header.rows, self._header.columns)
            if pixels.shape != expected or pixels.dtype != self._layout.dtype:
                raise self._unreadable(
                    index,
                    f"decoded {pixels.shape} {pixels.dtype}, header says {expected} "
                    f"{self._layout.dtype}",
                )
            self._cached = index, pixels
        return self._cached[1]

    def _unreadable(self, index: int, detail: str) -> ImageUnreadable:
        return ImageUnreadable(f"{self._source.name}: cannot decode frame {index} ({detail})")

    def frame(self, index: int) -> np.ndarray:
        return self._decoded(index).copy()

    def region(self, index: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return self._decoded(index)[y0:y1, x0:x1].copy()

    def downsampled(self, index: int, factor: int) -> np.ndarray:
        return self._decoded(index)[::factor, ::factor].copy()


class Jpeg2000Frames(DecodedFrames):
    """JPEG 2000 frames; Lossless windows decoded alone when that is bit-exact.

    A view downsampled by a power of two is decoded at reduced resolution (only the
    wavelet levels it needs): the low-pass band, a smoothed image sampled at the strided
    pixels, close to the mean of the block around each but not the pixels themselves. It
    is of the strided view's shape and dtype; raw, RLE and JPEG-LS frames still stride.
    """

    def _header_values(self, codestream: bytes) -> bool:
        """Whether OpenJPEG's values of `codestream` are pydicom's: its precision and
        signedness are the header's (pydicom reinterprets the values otherwise)."""
        parameters = get_j2k_parameters(codestream)
        precision, signed = parameters.get("precision"), parameters.get("is_signed")
        header = self._header
        return precision == header.bits_stored and signed == bool(header.pixel_representation)

    def _exact_windows(self, codestream: bytes) -> bool:
        """Whether an OpenJPEG window of `codestream` equals pydicom's frame slice."""
        return self._syntax == JPEG2000Lossless and self._header_values(codestream)

    def region(self, index: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        if self._is_cached(index) or not openjpeg_region.available():
            return super().region(index, y0, y1, x0, x1)
        codestream = self.codestream(index)
        if not self._exact_windows(codestream):
            return super().region(index, y0, y1, x0, x1)
        try:
            window = openjpeg_region.decode_window(codestream, y0, y1, x0, x1)
        except openjpeg_region.J2kError:
            return super().region(index, y0, y1, x0, x1)  # pydicom decodes it or says why not
        low, high = np.iinfo(self._layout.dtype).min, np.iinfo(self._layout.dtype).max
        if window.shape != (y1 - y0, x1 - x0) or window.min() < low or window.max() > high:
            return super().region(index, y0, y1, x0, x1)
        return window.astype(self._layout.dtype)

    def downsampled(self, index: int, factor: int) -> np.ndarray:
        """OpenJPEG's reduced-resolution decode (a low-pass view, never cached) for a
        power-of-two `factor` the codestream has the wavelet levels for; else the strided
        frame."""
        levels = factor.bit_length() - 1
        if factor < 2 or factor != 1 << levels or not openjpeg_region.available():
            return super().downsampled(index, factor)
        codestream = self.codestream(index)
        coded = j2k_decomposition_levels(codestream, f"{self._source.name}: frame {index}")
        if coded is None or coded < levels or not self._header_values(codestream):
            return super().downsampled(index, factor)
        try:
            view = openjpeg_region.decode_reduced(codestream, levels)
        except openjpeg_region.J2kError:
            return super().downsampled(index, factor)  # pydicom decodes it or says why not
        low, high = stored_range(self._layout.dtype, self._header.bits_stored)
        strided = (-(-self._header.rows // factor), -(-self._header.columns // factor))
        if view.shape != strided or view.min() < low or view.max() > high:
            return super().downsampled(index, factor)
        return view.astype(self._layout.dtype)


class BitPackedFrames:
    """1-bit (bit-packed) uncompressed frames: the whole Pixel Data value is read (such
    images are small: a frame of 67 M pixels is 8 MB) and pydicom unpacks each frame."""

    def __init__(self, source: ByteSource, layout: PixelLayout) -> None:
        pixel_data = source.read(layout.value_offset, layout.value_length or 0)
        self._dataset = _pixel_module(layout, pixel_data, layout.header.number_of_frames)
        self._decoder = get_decoder(UID(layout.header.transfer_syntax_uid))

    def frame(self, index: int) -> np.ndarray:
        return self._decoder.as_array(self._dataset, index=index)[0]

    def region(self, index: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return self.frame(index)[y0:y1, x0:x1].copy()

    def downsampled(self, index: int, factor: int) -> np.ndarray:
        return self.frame(index)[::factor, ::factor].copy()
