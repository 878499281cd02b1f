"""Where each frame of encapsulated Pixel Data lies, checked against the bytes present.

Encapsulated Pixel Data is a sequence of items (tag FFFE,E000 + 4-byte length): the
Basic Offset Table, then the fragments, closed by a Sequence Delimitation Item
(FFFE,E0DD, length 0). `FrameIndex` maps each frame to its byte span from, in order
of preference: the Extended Offset Table, the Basic Offset Table, or one scan of the
item headers (8 bytes each; the fragments' values are not read). Every length is
checked against the file's size before anything is read or allocated, and the
structure must close with the delimiter. Without an offset table, fragments map to
frames one to one, all to the single frame, or (JPEG family only) by the end-of-image
marker each frame's last fragment ends with. What a frame's bytes must hold is
checked in `codestream`.
"""

from __future__ import annotations

import itertools
import struct
from collections.abc import Sequence
from dataclasses import dataclass

from pydicom.dataset import Dataset
from pydicom.uid import UID, RLELossless

from embedpatch.dicom.codestream import ends_a_frame
from embedpatch.io.errors import ImageUnreadable
from embedpatch.io.source import ByteSource

ITEM = 0xFFFEE000
SEQUENCE_DELIMITER = 0xFFFEE0DD
ITEM_HEADER = 8
_DELIMITER_ITEM = struct.pack("<HHL", 0xFFFE, 0xE0DD, 0)


@dataclass(frozen=True)
class Span:
    """[start, end) of a frame's items in the file: item headers and values."""

    start: int
    end: int


def _item_header(data: bytes, position: int, name: str) -> tuple[int, int]:
    """(tag, length) of the item header at `position` of `data` (little endian always)."""
    group, element, length = struct.unpack_from("<HHL", data, position)
    tag = group << 16 | element
    if tag not in (ITEM, SEQUENCE_DELIMITER):
        raise ImageUnreadable(f"{name}: expected an item in encapsulated Pixel Data, got {tag:08X}")
    return tag, length


def _read_item_header(source: ByteSource, position: int) -> tuple[int, int]:
    if position + ITEM_HEADER > source.size:
        raise ImageUnreadable(
            f"{source.name}: encapsulated Pixel Data ends without a sequence delimiter"
        )
    return _item_header(source.read(position, ITEM_HEADER), 0, source.name)


def _item_end(source: ByteSource, position: int, length: int) -> int:
    """Where an item whose header starts at `position` ends, refusing one past the file."""
    end = position + ITEM_HEADER + length
    if end > source.size:
        raise ImageUnreadable(
            f"{source.name}: an item of {length} bytes at {position} runs past the end of "
            f"the file ({source.size} bytes): truncated or corrupt"
        )
    return end


def item_values(data: bytes, name: str) -> bytes:
    """The concatenated values of the items tiling `data` exactly (a frame's span)."""
    values, position = [], 0
    while position < len(data):
        if position + ITEM_HEADER > len(data):
            raise ImageUnreadable(f"{name}: a frame's items do not end where the next one starts")
        tag, length = _item_header(data, position, name)
        end = position + ITEM_HEADER + length
        if tag != ITEM or end > len(data):
            raise ImageUnreadable(f"{name}: a frame's items do not end where the next one starts")
        values.append(data[position + ITEM_HEADER : end])
        position = end
    return b"".join(values)


class FrameIndex:
    """The byte span of every frame of one image's encapsulated Pixel Data."""

    def __init__(self, source: ByteSource, dataset: Dataset, value_offset: int, frames: int):
        self._source = source
        self.frames = frames
        tag, table_length = _read_item_header(source, value_offset)
        if tag != ITEM or table_length % 4:
            raise ImageUnreadable(f"{source.name}: malformed Basic Offset Table item")
        first = _item_end(source, value_offset, table_length)  # the first fragment's header
        table = source.read(value_offset + ITEM_HEADER, table_length)
        offsets = struct.unpack(f"<{table_length // 4}L", table)
        extended = dataset.get("ExtendedOffsetTable")
        if extended is not None:
            self.spans = self._from_extended(first, extended, dataset)
        elif offsets:
            self.spans = self._from_offsets(first, offsets)
        else:
            self.spans = self._from_scan(first, UID(dataset.file_meta.TransferSyntaxUID))

    def _ending_at_delimiter(self, start: int) -> int:
        """Where the sequence delimiter after the item at `start` begins: the file's last 8
        bytes when they are it (one small read; the last frame's items are checked to tile
        up to it when that frame is read), else found by walking the items from `start`."""
        tail = self._source.size - ITEM_HEADER
        if tail > start and self._source.read(tail, ITEM_HEADER) == _DELIMITER_ITEM:
            return tail
        position = start
        while True:
            tag, length = _read_item_header(self._source, position)
            if tag == SEQUENCE_DELIMITER:
                return position
            position = _item_end(self._source, position, length)

    def _checked_starts(self, first: int, offsets: Sequence[int], what: str) -> list[int]:
        if len(offsets) != self.frames:
            raise ImageUnreadable(
                f"{self._source.name}: {what} has {len(offsets)} entries "
                f"for the header's {self.frames} frames"
            )
        starts = [first + offset for offset in offsets]
        increasing = all(a < b for a, b in itertools.pairwise(starts))
        if offsets[0] != 0 or not increasing or starts[-1] >= self._source.size:
            raise ImageUnreadable(f"{self._source.name}: {what} is not increasing from 0")
        return starts

    def _from_offsets(self, first: int, offsets: Sequence[int]) -> list[Span]:
        starts = self._checked_starts(first, offsets, "the Basic Offset Table")
        ends = [*starts[1:], self._ending_at_delimiter(starts[-1])]
        return [Span(start, end) for start, end in zip(starts, ends, strict=True)]

    def _from_extended(self, first: int, table: bytes, dataset: Dataset) -> list[Span]:
        lengths = dataset.get("ExtendedOffsetTableLengths")
        if lengths is None or len(table) % 8 or len(lengths) != len(table):
            raise ImageUnreadable(f"{self._source.name}: malformed Extended Offset Table")
        offsets = struct.unpack(f"<{len(table) // 8}Q", table)
        starts = self._checked_starts(first, offsets, "the Extended Offset Table")
        end = self._ending_at_delimiter(starts[-1])
        return [Span(start, stop) for start, stop in zip(starts, [*starts[1:], end], strict=True)]

    def _from_scan(self, first: int, syntax: UID) -> list[Span]:
        """One walk of the item headers (no values read), then fragments grouped to frames."""
        fragments, position = [], first
        while True:
            tag, length = _read_item_header(self._source, position)
            if tag == SEQUENCE_DELIMITER:
                break
            end = _item_end(self._source, position, length)
            fragments.append(Span(position, end))
            position = end
        if len(fragments) == self.frames:
            return fragments
        if self.frames == 1 and fragments:
            return [Span(fragments[0].start, fragments[-1].end)]
        if len(fragments) > self.frames and _is_jpeg_family(syntax):
            return self._grouped_by_end_marker(fragments)
        raise ImageUnreadable(
            f"{self._source.name}: Pixel Data holds {len(fragments)} fragments and no offset "
            f"table for the header's {self.frames} frames"
        )

    def _grouped_by_end_marker(self, fragments: list[Span]) -> list[Span]:
        """Frames as runs of fragments, each run closed by a fragment ending with EOI / EOC."""
        tails = self._source.read_ranges([(span.end - 3, 3) for span in fragments])
        spans, start = [], fragments[0].start
        for span, tail in zip(fragments, tails, strict=True):
            if ends_a_frame(tail):
                spans.append(Span(start, span.end))
                start = span.end
        if len(spans) != self.frames or spans[-1].end != fragments[-1].end:
            raise ImageUnreadable(
                f"{self._source.name}: {len(fragments)} fragments without an offset table do "
                f"not group into the header's {self.frames} frames"
            )
        return spans

    def frame_bytes(self, frame: int) -> bytes:
        """The encoded bytes of one frame: its items' values, concatenated."""
        span = self.spans[frame]
        return item_values(self._source.read(span.start, span.end - span.start), self._source.name)


def _is_jpeg_family(syntax: UID) -> bool:
    return syntax.startswith("1.2.840.10008.1.2.4.") and syntax != RLELossless
