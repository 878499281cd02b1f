"""A compressed frame's bytes checked against the header before any decoder sees them.

A frame's codestream states its own size: JPEG 2000 in its SIZ segment (inside the
'jp2c' box of a JP2 file), JPEG and JPEG-LS in their start-of-frame segment, RLE in the
segment count of its 64-byte header. `check_codestream` refuses a frame whose stream
does not start and end as its encoding requires (cut short, or a fragment taken for a
whole frame), or whose own rows, columns, components or precision are not the header's:
decoders size their output from the header, so a header claiming 65535 rows would
otherwise cost a large allocation for a few kilobytes of data. RLE's output is bounded by
its input (a two-byte run decodes to at most 128 bytes), so its header's frame size must
fit in 64 times each segment's length. `j2k_decomposition_levels` reads a JPEG 2000
codestream's wavelet levels from its main header. Only headers and markers are read, never
decoded.
"""

from __future__ import annotations

import itertools
import struct

from pydicom.uid import UID, RLELossless

from embedpatch.dicom.header import ImageHeader
from embedpatch.io.errors import ImageUnreadable

_END_MARKER = b"\xff\xd9"  # EOI (JPEG, JPEG-LS) and EOC (JPEG 2000)
_J2K_START = b"\xff\x4f\xff\x51"  # SOC then SIZ
_COD, _COC, _SOT = 0xFF52, 0xFF53, 0xFF90  # coding style (default, component), start of tile
_JP2_SIGNATURE = b"\x00\x00\x00\x0cjP  "
_JPEG_2000_PREFIX = "1.2.840.10008.1.2.4.9"
_HTJ2K_PREFIX = "1.2.840.10008.1.2.4.20"
_START_OF_FRAME = {*range(0xC0, 0xD0)} - {0xC4, 0xC8, 0xCC} | {0xF7}  # SOF0-15, SOF55
_WITHOUT_LENGTH = {0x01, *range(0xD0, 0xD9)}  # TEM, RST0-7, SOI
RLE_MAX_EXPANSION = 64
"""Bytes one byte of an RLE segment can decode to, at most (2 bytes -> 128)."""


def ends_a_frame(data: bytes) -> bool:
    """Whether `data` ends with the end marker, or with it and one padding byte (0x00, or
    the 0xFF fill byte some encoders use to reach an even length)."""
    return data.endswith(_END_MARKER) or (
        data[-3:-1] == _END_MARKER and data[-1:] in (b"\x00", b"\xff")
    )


def check_codestream(data: bytes, header: ImageHeader, name: str) -> None:
    """Refuse a frame (`name` in the message) whose encoded bytes are not whole, or whose
    own size, components or precision are not those of `header`."""
    syntax = UID(header.transfer_syntax_uid)
    if syntax == RLELossless:
        _check_rle(data, header, name)
    elif syntax.startswith((_JPEG_2000_PREFIX, _HTJ2K_PREFIX)):
        if not (data.startswith((_J2K_START, _JP2_SIGNATURE)) and ends_a_frame(data)):
            raise ImageUnreadable(f"{name}: not a whole JPEG 2000 codestream (SOC ... EOC)")
        _compare(_j2k_size(data, name), header, name, "JPEG 2000 SIZ")
    else:
        if not (data.startswith(b"\xff\xd8") and ends_a_frame(data)):
            raise ImageUnreadable(f"{name}: not a whole JPEG stream (SOI ... EOI)")
        _compare(_jpeg_size(data, name), header, name, "JPEG start of frame")


def _compare(
    size: tuple[int, int, int, tuple[int, ...]], header: ImageHeader, name: str, what: str
) -> None:
    """Rows, columns and components equal to the header's; every precision within Bits
    Allocated (decoders reconcile a precision other than Bits Stored, as pydicom does)."""
    rows, columns, components, precisions = size
    said = (header.rows, header.columns, header.samples_per_pixel)
    if (rows, columns, components) != said or max(precisions) > header.bits_allocated:
        raise ImageUnreadable(
            f"{name}: the {what} says {rows} x {columns}, {components} component(s) of "
            f"{'/'.join(map(str, precisions))} bits; the header says {said[0]} x {said[1]}, "
            f"{said[2]} of {header.bits_allocated} bits allocated"
        )


def _unpack(layout: str, data: bytes, position: int, name: str, what: str) -> tuple[int, ...]:
    if position < 0 or position + struct.calcsize(layout) > len(data):
        raise ImageUnreadable(f"{name}: the {what} runs past the frame's {len(data)} bytes")
    return struct.unpack_from(layout, data, position)


def _j2k_size(data: bytes, name: str) -> tuple[int, int, int, tuple[int, ...]]:
    """(rows, columns, components, precisions) from the SIZ segment."""
    start = _jp2_codestream(data, name) if data.startswith(_JP2_SIGNATURE) else 0
    if data[start : start + 4] != _J2K_START:
        raise ImageUnreadable(f"{name}: the JPEG 2000 codestream does not start with SOC, SIZ")
    x_size, y_size, x_origin, y_origin = _unpack(">4L", data, start + 8, name, "SIZ segment")
    (components,) = _unpack(">H", data, start + 40, name, "SIZ segment")
    precisions = tuple(
        (_unpack(">B", data, start + 42 + 3 * index, name, "SIZ segment")[0] & 0x7F) + 1
        for index in range(components)
    )
    return y_size - y_origin, x_size - x_origin, components, precisions or (0,)


def j2k_decomposition_levels(data: bytes, name: str) -> int | None:
    """The wavelet decomposition levels of component 0 of a JPEG 2000 codestream (or JP2
    file), from the main header: its COC segment's if it has one, else the COD segment's;
    None without either. Tile-part headers, which may change them, are not read."""
    start = _jp2_codestream(data, name) if data.startswith(_JP2_SIGNATURE) else 0
    if data[start : start + 4] != _J2K_START:
        raise ImageUnreadable(f"{name}: the JPEG 2000 codestream does not start with SOC, SIZ")
    (components,) = _unpack(">H", data, start + 40, name, "SIZ segment")
    component_layout = ">B" if components < 257 else ">H"
    levels = None
    position = start + 2
    while True:
        marker, length = _unpack(">HH", data, position, name, "JPEG 2000 main header")
        if marker == _SOT:
            return levels
        if marker >> 8 != 0xFF:
            raise ImageUnreadable(f"{name}: no JPEG 2000 marker at byte {position - start}")
        if marker == _COD:  # Lcod, Scod, SGcod (4 bytes), then SPcod: levels first
            (levels,) = _unpack(">B", data, position + 9, name, "COD segment")
        elif marker == _COC:  # Lcoc, Ccoc (1 or 2 bytes), Scoc, then SPcoc: levels first
            (component,) = _unpack(component_layout, data, position + 4, name, "COC segment")
            if component == 0:
                after = position + 4 + struct.calcsize(component_layout) + 1
                return _unpack(">B", data, after, name, "COC segment")[0]
        position += 2 + length


def _jp2_codestream(data: bytes, name: str) -> int:
    """Where the codestream of a JP2 file begins: the contents of its 'jp2c' box."""
    position = 0
    while position + 8 <= len(data):
        length, kind = _unpack(">L4s", data, position, name, "JP2 box header")
        header = 8
        if length == 1:
            (length,) = _unpack(">Q", data, position + 8, name, "JP2 box header")
            header = 16
        if kind == b"jp2c":
            return position + header
        if length < header:  # 0 means "to the end of the file": no jp2c box follows
            break
        position += length
    raise ImageUnreadable(f"{name}: JP2 file without a contiguous codestream ('jp2c') box")


def _jpeg_size(data: bytes, name: str) -> tuple[int, int, int, tuple[int, ...]]:
    """(rows, columns, components, precisions) from the first start-of-frame segment,
    found by walking the marker segments after SOI."""
    position = 2
    while True:
        marker, kind = _unpack(">BB", data, position, name, "JPEG marker segments")
        if marker != 0xFF:
            raise ImageUnreadable(f"{name}: no JPEG marker at byte {position} before the frame")
        if kind == 0xFF:  # fill byte
            position += 1
        elif kind in _WITHOUT_LENGTH:
            position += 2
        elif kind in _START_OF_FRAME:
            precision, rows, columns, components = _unpack(
                ">BHHB", data, position + 4, name, "JPEG start of frame"
            )
            if rows == 0:
                raise ImageUnreadable(
                    f"{name}: the JPEG start of frame leaves the number of lines to a later "
                    "DNL marker: its size cannot be checked before decoding"
                )
            return rows, columns, components, (precision,)
        elif kind == 0xD9 or kind == 0xDA:
            raise ImageUnreadable(f"{name}: JPEG stream without a start of frame")
        else:
            (length,) = _unpack(">H", data, position + 2, name, "JPEG marker segments")
            position += 2 + length


def _check_rle(data: bytes, header: ImageHeader, name: str) -> None:
    """The RLE header: one segment per byte of a sample, at increasing offsets inside the
    frame, each long enough to decode to a whole plane."""
    if len(data) < 64:
        raise ImageUnreadable(f"{name}: RLE frame of {len(data)} bytes has no header")
    count, *offsets = struct.unpack("<16L", data[:64])
    used = offsets[:count]
    expected = header.bits_allocated // 8 * header.samples_per_pixel
    increasing = all(a < b for a, b in itertools.pairwise(used))
    if count != expected or not used or used[0] != 64 or not increasing or used[-1] >= len(data):
        raise ImageUnreadable(
            f"{name}: RLE header lists {count} segments at {used}, expected {expected} "
            f"segments inside the frame's {len(data)} bytes"
        )
    shortest = min(end - start for start, end in itertools.pairwise([*used, len(data)]))
    plane = header.rows * header.columns
    if plane > RLE_MAX_EXPANSION * shortest:
        raise ImageUnreadable(
            f"{name}: an RLE segment of {shortest} bytes cannot hold the header's "
            f"{header.rows} x {header.columns} pixels (at most {RLE_MAX_EXPANSION * shortest})"
        )
