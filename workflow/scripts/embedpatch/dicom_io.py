"""Read DICOM headers and pixels fast: one file open per image, one frame or window at a time.

Pixel values equal `pydicom.pixels.pixel_array(path)` (or its frame), dtype kept:
- native little-endian data: memory-mapped at the Pixel Data offset, so only the
  pages of the rows needed are read, with pydicom's masking of unused high bits;
- JPEG 2000 Lossless: windows are decoded alone (OpenJPEG decode area, see
  `openjpeg_region`), reduced-resolution views via the wavelet low-pass band;
- anything else (JPEG 2000 lossy, JPEG-LS, RLE, big endian, ...): pydicom decodes
  the one frame needed, and the reader keeps the last decoded frame.

The header alone refuses (ImageUnreadable) what cannot be read safely: an unknown
or undecodable transfer syntax, a frame over MAX_FRAME_PIXELS (no decoder is ever
asked to allocate it), uncompressed Pixel Data whose length disagrees with Rows x
Columns x NumberOfFrames. Opening an ImageReader also refuses encapsulated Pixel
Data with fewer fragments than frames, or an offset table of another length. Given
the DICOM root, a file whose real path (symlinks resolved) is outside it is refused
before it is opened (ImageOutsideRoot).
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass
from types import TracebackType
from typing import BinaryIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.encaps import get_frame, parse_basic_offsets, parse_fragments
from pydicom.pixels import get_decoder
from pydicom.pixels.utils import get_j2k_parameters, pixel_dtype
from pydicom.uid import (
    JPEG2000,
    UID,
    ExplicitVRLittleEndian,
    ImplicitVRLittleEndian,
    JPEG2000Lossless,
)

from embedpatch import openjpeg_region
from embedpatch.reasons import RoiReason

_PIXEL_DATA = 0x7FE00010
_PIXEL_TAGS = {0x7FE00008: "Float Pixel Data", 0x7FE00009: "Double Float Pixel Data"}
_UNDEFINED_LENGTH = 0xFFFFFFFF
_LONG_LENGTH_VRS = {b"OB", b"OW", b"OD", b"OF", b"OL", b"OV", b"UN"}
MAX_FRAME_PIXELS = 1 << 26
"""Largest Rows x Columns read (67 M pixels; the largest mammography detectors give about
30 M). A header claiming more is refused: decoders allocate the whole frame up front."""
_REQUIRED = (
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "SamplesPerPixel",
    "PhotometricInterpretation",
)


class ImageError(Exception):
    """An image the pipeline cannot use; `reason` is the rejection code to record."""

    reason: RoiReason


class ImageMissing(ImageError):  # noqa: N818 - named after its reason code
    """The DICOM file does not exist."""

    reason = RoiReason.IMAGE_MISSING


class ImageUnreadable(ImageError):  # noqa: N818 - named after its reason code
    """The file is not a DICOM image, or its pixels cannot be read or decoded."""

    reason = RoiReason.IMAGE_UNREADABLE


class ImageOutsideRoot(ImageError):  # noqa: N818 - named after its reason code
    """The file, symlinks resolved, is not below the DICOM root."""

    reason = RoiReason.IMAGE_OUTSIDE_ROOT


@dataclass(frozen=True)
class ImageHeader:
    """The image attributes patch extraction needs."""

    rows: int
    columns: int
    number_of_frames: int
    sop_class_uid: str | None
    transfer_syntax_uid: str
    photometric_interpretation: str
    bits_allocated: int
    bits_stored: int
    pixel_representation: int
    samples_per_pixel: int
    window_center: float | None
    window_width: float | None


@dataclass(frozen=True)
class _Layout:
    """A parsed header and where the Pixel Data value starts in the file."""

    header: ImageHeader
    dataset: Dataset
    value_offset: int
    value_length: int | None  # None: undefined length (encapsulated)


def _one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _resolved_inside(path: str | os.PathLike, root: str | os.PathLike) -> str:
    """The real path of `path`, if it lies strictly below the real path of `root`."""
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    if real == real_root or os.path.commonpath([real, real_root]) != real_root:
        raise ImageOutsideRoot(f"{path}: resolves to {real}, outside the DICOM root {real_root}")
    return real


def _open(path: str | os.PathLike, root: str | os.PathLike | None = None) -> BinaryIO:
    """`path` opened for reading; with `root`, its real path, refused unless below root."""
    target = path if root is None else _resolved_inside(path, root)
    try:
        return open(target, "rb")
    except FileNotFoundError:
        raise ImageMissing(f"{path}: no such file") from None
    except OSError as error:
        raise ImageUnreadable(f"{path}: cannot open ({_one_line(error)})") from error


def _first_number(value: object) -> float | None:
    """A DS value as float: the first one if multi-valued, None if absent or empty."""
    if isinstance(value, pydicom.multival.MultiValue):
        value = value[0] if value else None
    return None if value in (None, "") else float(value)


def _header(dataset: Dataset, path: str | os.PathLike) -> ImageHeader:
    values = {keyword: dataset.get(keyword) for keyword in _REQUIRED}
    missing = [keyword for keyword, value in values.items() if value in (None, "")]
    if missing:
        raise ImageUnreadable(f"{path}: not an image, missing {', '.join(missing)}")
    try:
        header = ImageHeader(
            rows=int(values["Rows"]),
            columns=int(values["Columns"]),
            number_of_frames=max(int(dataset.get("NumberOfFrames") or 1), 1),
            sop_class_uid=str(dataset.SOPClassUID) if "SOPClassUID" in dataset else None,
            transfer_syntax_uid=str(dataset.file_meta.TransferSyntaxUID),
            photometric_interpretation=str(values["PhotometricInterpretation"]),
            bits_allocated=int(values["BitsAllocated"]),
            bits_stored=int(values["BitsStored"]),
            pixel_representation=int(values["PixelRepresentation"]),
            samples_per_pixel=int(values["SamplesPerPixel"]),
            window_center=_first_number(dataset.get("WindowCenter")),
            window_width=_first_number(dataset.get("WindowWidth")),
        )
    except (TypeError, ValueError) as error:
        raise ImageUnreadable(f"{path}: malformed image attribute ({_one_line(error)})") from error
    if not (
        header.rows > 0 and header.columns > 0 and 0 < header.bits_stored <= header.bits_allocated
    ):
        raise ImageUnreadable(f"{path}: inconsistent image attributes {header}")
    if header.rows * header.columns > MAX_FRAME_PIXELS:
        raise ImageUnreadable(
            f"{path}: implausible frame size {header.rows} x {header.columns} "
            f"(over {MAX_FRAME_PIXELS} pixels)"
        )
    return header


def _decodable(syntax: UID) -> bool:
    """Whether pydicom has a usable pixel decoder for `syntax` (unknown UIDs have none)."""
    try:
        return get_decoder(syntax).is_available
    except NotImplementedError:
        return False


def _dataset(file: BinaryIO, path: str | os.PathLike) -> Dataset:
    """The header up to Pixel Data, leaving `file` at the Pixel Data element."""
    try:
        dataset = pydicom.dcmread(file, stop_before_pixels=True)
    except Exception as error:  # pydicom raises many kinds on bad input
        raise ImageUnreadable(f"{path}: not a readable DICOM file ({_one_line(error)})") from error
    syntax = dataset.file_meta.get("TransferSyntaxUID")
    if syntax is None:
        raise ImageUnreadable(f"{path}: no Transfer Syntax UID in the file meta")
    if not _decodable(UID(syntax)):
        raise ImageUnreadable(f"{path}: transfer syntax {UID(syntax).name} cannot be decoded")
    if UID(syntax).is_deflated:
        raise ImageUnreadable(f"{path}: deflated transfer syntax is not supported")
    return dataset


def _pixel_element(file: BinaryIO, syntax: UID, path: str | os.PathLike) -> tuple[int, int | None]:
    """(value offset, value length or None if undefined) of the Pixel Data at `file`'s position."""
    endian = "<" if syntax.is_little_endian else ">"
    start = file.read(8)
    if len(start) < 8:
        raise ImageUnreadable(f"{path}: no Pixel Data")
    group, element = struct.unpack(f"{endian}HH", start[:4])
    tag = group << 16 | element
    if tag != _PIXEL_DATA:
        raise ImageUnreadable(f"{path}: {_PIXEL_TAGS.get(tag, 'pixel data')} is not supported")
    if syntax.is_implicit_VR:
        (length,) = struct.unpack(f"{endian}L", start[4:])
    elif start[4:6] in _LONG_LENGTH_VRS:
        (length,) = struct.unpack(f"{endian}L", file.read(4))
    else:
        raise ImageUnreadable(f"{path}: Pixel Data has VR {start[4:6]!r}")
    return file.tell(), None if length == _UNDEFINED_LENGTH else length


def _native_length(header: ImageHeader, frames: int) -> int:
    """Bytes of `frames` uncompressed frames of this image (without padding)."""
    bits = frames * header.rows * header.columns * header.samples_per_pixel
    return (bits * header.bits_allocated + 7) // 8


def _check_size(file: BinaryIO, layout: _Layout, path: str | os.PathLike) -> None:
    """Refuse defined-length Pixel Data that runs past the end of the file, and uncompressed
    Pixel Data shorter than the header's frames or longer by a whole frame or more."""
    length, header = layout.value_length, layout.header
    if length is None:
        return
    available = os.fstat(file.fileno()).st_size - layout.value_offset
    if available < length:
        raise ImageUnreadable(f"{path}: truncated, Pixel Data has {available} of {length} bytes")
    if UID(header.transfer_syntax_uid).is_compressed:
        return
    expected = _native_length(header, header.number_of_frames)
    if not expected <= length < expected + _native_length(header, 1):
        raise ImageUnreadable(
            f"{path}: Pixel Data holds {length} bytes, the header implies {expected} "
            f"({header.number_of_frames} frames of {header.rows} x {header.columns})"
        )


def _check_frame_count(file: BinaryIO, layout: _Layout, path: str | os.PathLike) -> None:
    """Refuse encapsulated Pixel Data that cannot hold the header's frames: an offset table
    of another length, or fewer fragments than frames (item headers only are read)."""
    frames = layout.header.number_of_frames
    position = file.tell()
    file.seek(layout.value_offset)
    try:
        offsets = parse_basic_offsets(file)
        fragments, _ = parse_fragments(file)
    except Exception as error:  # malformed items
        raise ImageUnreadable(
            f"{path}: malformed encapsulated Pixel Data ({_one_line(error)})"
        ) from error
    finally:
        file.seek(position)
    extended = layout.dataset.get("ExtendedOffsetTable")
    listed = len(extended) // 8 if extended is not None else len(offsets) or None
    if fragments < frames or listed not in (None, frames):
        raise ImageUnreadable(
            f"{path}: Pixel Data holds {fragments} fragments and an offset table of "
            f"{listed or 'no'} entries for the header's {frames} frames"
        )


def _layout(file: BinaryIO, path: str | os.PathLike) -> _Layout:
    dataset = _dataset(file, path)
    header = _header(dataset, path)
    offset, length = _pixel_element(file, UID(header.transfer_syntax_uid), path)
    layout = _Layout(header, dataset, offset, length)
    _check_size(file, layout, path)
    return layout


def read_header(path: str | os.PathLike, root: str | os.PathLike | None = None) -> ImageHeader:
    """The image attributes of `path`, read without reading any pixel data.

    Raises ImageMissing if there is no such file, ImageUnreadable if it is not a
    DICOM image the reader can use (see the module docstring), ImageOutsideRoot if
    `root` is given and the file's real path is not below it.
    """
    with _open(path, root) as file:
        return _layout(file, path).header


def _check_window(header: ImageHeader, y0: int, y1: int, x0: int, x1: int) -> None:
    if not (0 <= y0 < y1 <= header.rows and 0 <= x0 < x1 <= header.columns):
        raise ValueError(
            f"window [{y0}:{y1}, {x0}:{x1}] is empty or outside the "
            f"{header.rows} x {header.columns} image"
        )


def _stored_range(dtype: np.dtype, bits_stored: int) -> tuple[int, int]:
    """Smallest and largest value of a `bits_stored`-bit integer of `dtype`'s signedness."""
    if dtype.kind == "i":
        return -(1 << bits_stored - 1), (1 << bits_stored - 1) - 1
    return 0, (1 << bits_stored) - 1


def _masked_copy(pixels: np.ndarray, bits_stored: int) -> np.ndarray:
    """A new array of `pixels` with pydicom's correction for Bits Stored < Bits Allocated."""
    unused = pixels.dtype.itemsize * 8 - bits_stored
    if not unused:
        return pixels.copy()
    if pixels.dtype.kind == "u":
        return np.bitwise_and(pixels, (1 << bits_stored) - 1)
    shifted = np.left_shift(pixels, unused)
    return np.right_shift(shifted, unused, out=shifted)


class _NativeFrames:
    """Uncompressed little-endian frames, memory-mapped: only the pages of the rows used are read.

    One pass copies and masks, so a full frame costs about as much as reading its
    bytes. Trade-off: an I/O error, or the file shrinking while mapped, raises
    SIGBUS rather than OSError; the size is checked when the reader opens.
    """

    def __init__(self, file: BinaryIO, layout: _Layout, dtype: np.dtype, path: str) -> None:
        header = layout.header
        shape = (header.number_of_frames, header.rows, header.columns)
        expected = _native_length(header, header.number_of_frames)
        if layout.value_length is None or layout.value_length < expected:
            raise ImageUnreadable(
                f"{path}: Pixel Data holds {layout.value_length} bytes, "
                f"the header implies {expected}"
            )
        self._bits_stored = header.bits_stored
        self._pixels = np.memmap(file, dtype, "r", layout.value_offset, shape).view(np.ndarray)

    def region(self, frame: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return _masked_copy(self._pixels[frame, y0:y1, x0:x1], self._bits_stored)

    def frame(self, frame: int) -> np.ndarray:
        return _masked_copy(self._pixels[frame], self._bits_stored)

    def downsampled(self, frame: int, factor: int) -> np.ndarray:
        return _masked_copy(self._pixels[frame, ::factor, ::factor], self._bits_stored)

    def close(self) -> None:
        del self._pixels  # unmaps: no view of the mapping ever leaves this class


class _DecodedFrames:
    """Frames pydicom decodes one at a time from the open file; the last one is kept."""

    def __init__(self, file: BinaryIO, layout: _Layout, dtype: np.dtype, path: str) -> None:
        self._file = file
        self._layout = layout
        self._header = layout.header
        self._dtype = dtype
        self._path = path
        self._cached: tuple[int, np.ndarray] | None = None

    def _is_cached(self, frame: int) -> bool:
        return self._cached is not None and self._cached[0] == frame

    def _decoded(self, frame: int) -> np.ndarray:
        if not self._is_cached(frame):
            self._cached = None  # free the previous frame before decoding the next one
            try:
                pixels = pydicom.pixels.pixel_array(self._file, index=frame)
            except Exception as error:  # decoders raise many kinds on bad data
                raise self._unreadable(frame, error) from error
            self._cached = frame, pixels
        return self._cached[1]

    def _unreadable(self, frame: int, error: BaseException) -> ImageUnreadable:
        return ImageUnreadable(f"{self._path}: cannot decode frame {frame} ({_one_line(error)})")

    def region(self, frame: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        return self._decoded(frame)[y0:y1, x0:x1].copy()

    def frame(self, frame: int) -> np.ndarray:
        return self._decoded(frame).copy()

    def downsampled(self, frame: int, factor: int) -> np.ndarray:
        return self._decoded(frame)[::factor, ::factor].copy()

    def close(self) -> None:
        self._cached = None


class _Jpeg2000Frames(_DecodedFrames):
    """JPEG 2000 frames: windows and reduced views decoded without the full frame.

    Windows only for JPEG 2000 Lossless (reversible wavelet): there OpenJPEG's area
    decode is bit-exact with a full decode; lossy windows come from the full frame.
    """

    def _codestream(self, frame: int) -> bytes:
        self._file.seek(self._layout.value_offset)
        dataset = self._layout.dataset
        offsets = dataset.get("ExtendedOffsetTable"), dataset.get("ExtendedOffsetTableLengths")
        try:
            return get_frame(
                self._file,
                frame,
                number_of_frames=self._header.number_of_frames,
                extended_offsets=offsets if None not in offsets else None,
            )
        except Exception as error:  # malformed or truncated encapsulation
            raise self._unreadable(frame, error) from error

    def _exact_windows(self, codestream: bytes) -> bool:
        """Whether an OpenJPEG window of `codestream` equals pydicom's frame slice."""
        parameters = get_j2k_parameters(codestream)
        signed = bool(self._header.pixel_representation)
        precision = self._header.bits_stored
        return parameters.get("precision") == precision and parameters.get("is_signed") == signed

    def _bits_stored_range(self, pixels: np.ndarray) -> np.ndarray:
        low, high = _stored_range(self._dtype, self._header.bits_stored)
        return np.clip(pixels, low, high).astype(self._dtype)

    def region(self, frame: int, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
        lossless = self._header.transfer_syntax_uid == JPEG2000Lossless
        if lossless and openjpeg_region.available() and not self._is_cached(frame):
            codestream = self._codestream(frame)
            if self._exact_windows(codestream):
                try:
                    window = openjpeg_region.decode_window(codestream, y0, y1, x0, x1)
                except openjpeg_region.J2kError:
                    pass  # let pydicom decode the frame: it succeeds or says why not
                else:
                    return window.astype(self._dtype)
        return super().region(frame, y0, y1, x0, x1)

    def downsampled(self, frame: int, factor: int) -> np.ndarray:
        reduce = (factor & -factor).bit_length() - 1  # largest power of two dividing factor
        if reduce == 0 or self._is_cached(frame) or not openjpeg_region.available():
            return super().downsampled(frame, factor)
        try:
            reduced = openjpeg_region.decode_reduced(self._codestream(frame), reduce)
        except openjpeg_region.J2kError:
            return super().downsampled(frame, factor)
        step = factor >> reduce
        return self._bits_stored_range(reduced[::step, ::step])


_EXACT_NATIVE = {ExplicitVRLittleEndian, ImplicitVRLittleEndian}


def _pixel_dtype(dataset: Dataset, path: str | os.PathLike) -> np.dtype:
    """The dtype pydicom decodes this image to."""
    try:
        return pixel_dtype(dataset)
    except (NotImplementedError, ValueError) as error:
        raise ImageUnreadable(f"{path}: unsupported pixel format ({_one_line(error)})") from error


_JPEG2000 = {JPEG2000, JPEG2000Lossless}


class ImageReader:
    """One open DICOM image: frames and windows read on demand, never the whole volume.

    Use as a context manager; the file is opened once, in the constructor (with
    `root`, only if its real path is below it). Every array returned is new and
    owned by the caller, with pydicom's dtype and values.
    """

    def __init__(self, path: str | os.PathLike, root: str | os.PathLike | None = None) -> None:
        self.path = str(path)
        self._file = _open(path, root)
        try:
            layout = _layout(self._file, path)
            self.header = layout.header
            if self.header.samples_per_pixel != 1:
                raise ImageUnreadable(
                    f"{path}: {self.header.samples_per_pixel} samples per pixel, "
                    "only grayscale images are supported"
                )
            self.dtype = _pixel_dtype(layout.dataset, path)
            self._frames = self._frames_for(layout)
        except BaseException:
            self._file.close()
            raise

    def _frames_for(self, layout: _Layout) -> _NativeFrames | _DecodedFrames:
        syntax = layout.header.transfer_syntax_uid
        if layout.value_length is None:
            _check_frame_count(self._file, layout, self.path)
        if syntax in _EXACT_NATIVE and layout.header.bits_allocated % 8 == 0:
            return _NativeFrames(self._file, layout, self.dtype, self.path)
        if syntax in _JPEG2000:
            return _Jpeg2000Frames(self._file, layout, self.dtype, self.path)
        return _DecodedFrames(self._file, layout, self.dtype, self.path)

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
        _check_window(self.header, y0, y1, x0, x1)
        return self._frames.region(frame_index, y0, y1, x0, x1)

    def downsampled(self, frame_index: int, factor: int) -> np.ndarray:
        """A ceil(rows / factor) x ceil(columns / factor) low-resolution view of one frame.

        Native data: every factor-th pixel of every factor-th row (only those rows
        are read). JPEG 2000: the wavelet low-pass band at the largest power of two
        dividing `factor` (an average, not a sample), then strided. Meant for QC,
        not for exact values.
        """
        self._check_frame(frame_index)
        if factor < 1:
            raise ValueError(f"downsampling factor must be >= 1, got {factor}")
        return self._frames.downsampled(frame_index, factor)

    def close(self) -> None:
        """Close the file; the reader cannot be used afterwards."""
        self._frames.close()
        self._file.close()

    def __enter__(self) -> ImageReader:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def read_downsampled(
    source: str | os.PathLike | ImageReader, frame: int, factor: int
) -> np.ndarray:
    """A cheap low-resolution view of one frame for QC (see ImageReader.downsampled)."""
    if isinstance(source, ImageReader):
        return source.downsampled(frame, factor)
    with ImageReader(source) as reader:
        return reader.downsampled(frame, factor)


def invert_monochrome1(pixels: np.ndarray, bits_stored: int) -> np.ndarray:
    """MONOCHROME1 to MONOCHROME2 (tissue bright): mirror values in the Bits Stored range."""
    low, high = _stored_range(pixels.dtype, bits_stored)
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
