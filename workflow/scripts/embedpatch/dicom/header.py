"""An image's header and where its Pixel Data value lies, read from the file's first bytes only.

The header is parsed by pydicom from a prefix of the file (HEADER_PREFIX bytes, grown
while the Pixel Data element is not inside it). pydicom cannot give the value offset
of undefined-length (encapsulated) Pixel Data without reading all of it, so the
Pixel Data element header itself (tag, VR, length: 8 or 12 bytes) is decoded here.

Refused here (ImageUnreadable), before any pixel is read: a file that is not DICOM,
an unknown, deflated or undecodable transfer syntax, Float / Double Float Pixel Data,
missing or inconsistent image attributes, a NumberOfFrames that is not a positive
integer, a frame over MAX_FRAME_PIXELS, defined-length Pixel Data running past the
end of the file, and uncompressed Pixel Data whose length disagrees with the header.
"""

from __future__ import annotations

import io
import struct
from dataclasses import dataclass

import numpy as np
import pydicom
from pydicom.dataset import Dataset
from pydicom.multival import MultiValue
from pydicom.pixels import get_decoder
from pydicom.pixels.utils import pixel_dtype
from pydicom.uid import UID

from embedpatch.io.errors import ImageUnreadable, one_line
from embedpatch.io.source import ByteSource

HEADER_PREFIX = 64 << 10
"""Bytes read first for the header (real mammograms' headers take 5-30 KB)."""
MAX_HEADER_BYTES = 64 << 20
"""A file whose Pixel Data element does not start within this many bytes is refused."""
MAX_FRAME_PIXELS = 1 << 26
"""Largest Rows x Columns read (67 M pixels; the largest mammography detectors give about
30 M). A header claiming more is refused: decoders allocate the whole frame up front."""

_PIXEL_DATA = 0x7FE00010
_OTHER_PIXEL_TAGS = {0x7FE00008: "Float Pixel Data", 0x7FE00009: "Double Float Pixel Data"}
_UNDEFINED_LENGTH = 0xFFFFFFFF
_LONG_LENGTH_VRS = {"OB", "OW", "OD", "OF", "OL", "OV", "UN"}
_REQUIRED = (
    "Rows",
    "Columns",
    "BitsAllocated",
    "BitsStored",
    "PixelRepresentation",
    "SamplesPerPixel",
    "PhotometricInterpretation",
)


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
    patient_orientation: tuple[str, ...] = ()  # PatientOrientation's values, () if absent
    image_laterality: str | None = None  # ImageLaterality
    view_position: str | None = None  # ViewPosition

    @property
    def frame_pixels(self) -> int:
        """Samples in one frame."""
        return self.rows * self.columns * self.samples_per_pixel

    def native_length(self, frames: int) -> int:
        """Bytes of `frames` uncompressed frames (without padding)."""
        return (frames * self.frame_pixels * self.bits_allocated + 7) // 8


@dataclass(frozen=True)
class PixelLayout:
    """A parsed header and where the Pixel Data value lies in the file."""

    header: ImageHeader
    dataset: Dataset  # the header's elements, Pixel Data excluded
    dtype: np.dtype  # what pydicom decodes the pixels to
    value_offset: int
    value_length: int | None  # None: undefined length (encapsulated)
    vr: str  # Pixel Data's VR ("OB" / "OW"; "OW" for implicit VR)
    prefix: bytes  # the file's first bytes, read for the header


def _first_number(value: object) -> float | None:
    """A DS value as float: the first one if multi-valued, None if absent or empty."""
    if isinstance(value, MultiValue):
        value = value[0] if value else None
    return None if value in (None, "") else float(value)


def _texts(value: object) -> tuple[str, ...]:
    """A text element's values, stripped, empty ones left out (() when absent)."""
    values = value if isinstance(value, MultiValue) else [value]
    return tuple(text for text in (str(v).strip() for v in values if v is not None) if text)


def _text(value: object) -> str | None:
    """A single-valued text element, stripped; None when absent or empty."""
    values = _texts(value)
    return values[0] if values else None


def _frame_count(dataset: Dataset, name: str) -> int:
    """NumberOfFrames as a positive integer (1 when absent), refusing anything else."""
    value = dataset.get("NumberOfFrames")
    if value in (None, ""):
        return 1
    try:
        count = int(value)
    except (TypeError, ValueError):
        raise ImageUnreadable(f"{name}: NumberOfFrames {value!r} is not an integer") from None
    if count < 1 or count != float(value):
        raise ImageUnreadable(f"{name}: NumberOfFrames {value!r} is not a positive integer")
    return count


def _image_header(dataset: Dataset, name: str) -> ImageHeader:
    values = {keyword: dataset.get(keyword) for keyword in _REQUIRED}
    missing = [keyword for keyword, value in values.items() if value in (None, "")]
    if missing:
        raise ImageUnreadable(f"{name}: not an image, missing {', '.join(missing)}")
    try:
        header = ImageHeader(
            rows=int(values["Rows"]),
            columns=int(values["Columns"]),
            number_of_frames=_frame_count(dataset, name),
            sop_class_uid=str(dataset.SOPClassUID) if "SOPClassUID" in dataset else None,
            transfer_syntax_uid=str(dataset.file_meta.TransferSyntaxUID),
            photometric_interpretation=str(values["PhotometricInterpretation"]),
            bits_allocated=int(values["BitsAllocated"]),
            bits_stored=int(values["BitsStored"]),
            pixel_representation=int(values["PixelRepresentation"]),
            samples_per_pixel=int(values["SamplesPerPixel"]),
            window_center=_first_number(dataset.get("WindowCenter")),
            window_width=_first_number(dataset.get("WindowWidth")),
            patient_orientation=_texts(dataset.get("PatientOrientation")),
            image_laterality=_text(dataset.get("ImageLaterality")),
            view_position=_text(dataset.get("ViewPosition")),
        )
    except (TypeError, ValueError) as error:
        raise ImageUnreadable(f"{name}: malformed image attribute ({one_line(error)})") from error
    consistent = (
        header.rows > 0
        and header.columns > 0
        and header.samples_per_pixel > 0
        and 0 < header.bits_stored <= header.bits_allocated
        and header.pixel_representation in (0, 1)
    )
    if not consistent:
        raise ImageUnreadable(f"{name}: inconsistent image attributes {header}")
    if header.rows * header.columns > MAX_FRAME_PIXELS:
        raise ImageUnreadable(
            f"{name}: implausible frame size {header.rows} x {header.columns} "
            f"(over {MAX_FRAME_PIXELS} pixels)"
        )
    return header


def _decodable(syntax: UID) -> bool:
    """Whether pydicom has a usable pixel decoder for `syntax` (unknown UIDs have none)."""
    try:
        return get_decoder(syntax).is_available
    except NotImplementedError:
        return False


def _transfer_syntax(dataset: Dataset, name: str) -> UID:
    syntax = dataset.file_meta.get("TransferSyntaxUID")
    if syntax is None:
        raise ImageUnreadable(f"{name}: no Transfer Syntax UID in the file meta")
    syntax = UID(syntax)
    if not syntax.is_transfer_syntax:
        raise ImageUnreadable(f"{name}: {syntax} is not a known transfer syntax")
    if syntax.is_deflated:
        raise ImageUnreadable(f"{name}: deflated transfer syntax is not supported")
    if not _decodable(syntax):
        raise ImageUnreadable(f"{name}: transfer syntax {syntax.name} cannot be decoded")
    return syntax


def _parse(prefix: bytes) -> tuple[Dataset, int] | Exception:
    """The dataset up to Pixel Data and the offset where parsing stopped, or the error."""
    buffer = io.BytesIO(prefix)
    try:
        dataset = pydicom.dcmread(buffer, stop_before_pixels=True)
    except Exception as error:  # pydicom raises many kinds on bad or cut input
        return error
    return dataset, buffer.tell()


def _pixel_element(prefix: bytes, position: int, syntax: UID, name: str) -> tuple[int, int, str]:
    """(value offset, length, VR) of the Pixel Data element starting at `position`."""
    endian = "<" if syntax.is_little_endian else ">"
    group, element = struct.unpack_from(f"{endian}HH", prefix, position)
    tag = group << 16 | element
    if tag in _OTHER_PIXEL_TAGS:
        raise ImageUnreadable(f"{name}: {_OTHER_PIXEL_TAGS[tag]} is not supported")
    if tag != _PIXEL_DATA:
        raise ImageUnreadable(f"{name}: no Pixel Data")
    if syntax.is_implicit_VR:
        (length,) = struct.unpack_from(f"{endian}L", prefix, position + 4)
        return position + 8, length, "OW"
    vr = prefix[position + 4 : position + 6].decode("ascii", "replace")
    if vr not in _LONG_LENGTH_VRS:
        raise ImageUnreadable(f"{name}: Pixel Data has VR {vr!r}")
    (length,) = struct.unpack_from(f"{endian}L", prefix, position + 8)
    return position + 12, length, vr


def _header_prefix(source: ByteSource) -> tuple[bytes, Dataset, int]:
    """The smallest prefix (growing by 4x) holding the header and Pixel Data's element header."""
    want = HEADER_PREFIX
    while True:
        prefix = source.read(0, min(want, source.size))
        whole = len(prefix) == source.size
        parsed = _parse(prefix)
        if isinstance(parsed, tuple) and (whole or parsed[1] + 12 <= len(prefix)):
            return prefix, *parsed
        if whole or want >= MAX_HEADER_BYTES:
            if isinstance(parsed, Exception):
                raise ImageUnreadable(
                    f"{source.name}: not a readable DICOM file ({one_line(parsed)})"
                ) from parsed
            raise ImageUnreadable(
                f"{source.name}: no Pixel Data within the first {len(prefix)} bytes"
            )
        want *= 4


def _check_native_length(layout: PixelLayout, name: str) -> None:
    """Uncompressed Pixel Data must hold the header's frames (and less than one frame more)."""
    header = layout.header
    expected = header.native_length(header.number_of_frames)
    length = layout.value_length
    if length is None or not expected <= length < expected + header.native_length(1):
        raise ImageUnreadable(
            f"{name}: Pixel Data holds {length} bytes, the header implies {expected} "
            f"({header.number_of_frames} frames of {header.rows} x {header.columns})"
        )


def read_layout(source: ByteSource) -> PixelLayout:
    """The header of the image in `source` and where its Pixel Data lies (no pixel read)."""
    prefix, dataset, position = _header_prefix(source)
    name = source.name
    syntax = _transfer_syntax(dataset, name)
    header = _image_header(dataset, name)
    if position + 8 > len(prefix):
        raise ImageUnreadable(f"{name}: no Pixel Data")
    offset, length, vr = _pixel_element(prefix, position, syntax, name)
    try:
        dtype = pixel_dtype(dataset)
    except (NotImplementedError, ValueError, AttributeError) as error:
        raise ImageUnreadable(f"{name}: unsupported pixel format ({one_line(error)})") from error
    defined = None if length == _UNDEFINED_LENGTH else length
    if defined is not None and offset + defined > source.size:
        raise ImageUnreadable(
            f"{name}: truncated, Pixel Data has {source.size - offset} of {defined} bytes"
        )
    layout = PixelLayout(header, dataset, np.dtype(dtype), offset, defined, vr, prefix)
    if syntax.is_encapsulated != (defined is None):
        raise ImageUnreadable(
            f"{name}: {'encapsulated' if syntax.is_encapsulated else 'native'} transfer syntax "
            f"with {'defined' if defined is not None else 'undefined'}-length Pixel Data"
        )
    if not syntax.is_encapsulated:
        _check_native_length(layout, name)
    return layout
