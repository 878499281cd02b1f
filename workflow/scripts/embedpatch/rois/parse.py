"""Parse EMBED's ROI_coords / ROI_frames strings and ROI count cells, never with eval.

Both strings are lists (or Python tuples) of integer lists, exactly two levels deep:
``[[1401, 980, 1510, 1148]]``, ``((1951, 347, 2244, 626),)``, frames ``[[36, 37], [14]]``.
A regex tokenizer and a fixed-depth recursive-descent parser read them; no public
function here raises on any input: problems come back as `Rejected` values.

Decisions:
- Brackets are read structurally: ``((1, 2, 3, 4))`` is one box (Python would see a flat
  tuple). ``[`` closes with ``]`` and ``(`` with ``)``; the two kinds may be mixed.
- Whitespace and trailing commas are allowed; an empty entry (``[[]]``) is one entry with
  no values (wrong_arity for a box, frames_missing later for a frame list).
- Negative integers parse: validation rejects them by geometry or frame range.
- A value that is not an ASCII integer fitting in 64 bits (``10.5``, ``10.0``, ``nan``,
  ``'7'``, ``+1``) rejects only its own entry (non_integer, reported before wrong_arity);
  wrong nesting, a missing comma, unbalanced brackets, trailing text or text longer than
  `MAX_TEXT_CHARS` reject the whole field (malformed_coords / malformed_frames).
- Missing cells (None, NaN, pandas NA), ``""``, whitespace, ``[]`` and ``()`` are empty
  (vocab.EMPTY_ROI_TEXT).

Which rows declare ROIs at all is one rule for both stages, `declares_rois`: stage 1
keeps a 3D row only when it does, stage 2 validates exactly the rows that do.
"""

from __future__ import annotations

import math
import numbers
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from embedpatch.geometry import Box
from embedpatch.reasons import RoiReason
from embedpatch.vocab import EMPTY_ROI_TEXT, ROI_COUNT

MAX_TEXT_CHARS = 10_000
MAX_TABLE_INT = 2**31 - 1
"""Largest count or size a table cell may give: no real image has more, and the counts
summed over any table stay exact in int64 (a float cell of 9.2e18 would wrap)."""
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_SHOW_CHARS = 40

_TOKEN = re.compile(r"(?P<space>\s+)|(?P<punct>[\[\]\(\),])|(?P<scalar>[^\[\]\(\),\s]+)")
_INTEGER = re.compile(r"-?[0-9]{1,20}")
_CLOSER = {"[": "]", "(": ")"}
_PUNCT = frozenset("[](),")
_END = ""

T = TypeVar("T")


@dataclass(frozen=True)
class Rejected:
    """Why a field, or one entry of it, could not be used."""

    reason: RoiReason
    detail: str


@dataclass(frozen=True)
class Parsed(Generic[T]):
    """A parsed field: one value or `Rejected` per entry, or a whole-field `error`."""

    entries: tuple[T | Rejected, ...] = ()
    error: Rejected | None = None


def is_missing(value: object) -> bool:
    """True for a table cell holding no value: None, NaN, pandas NA / NaT."""
    return value is None or (pd.api.types.is_scalar(value) and bool(pd.isna(value)))


def declares_rois(count: pa.Array, coords: pa.Array, frames: pa.Array | None = None) -> np.ndarray:
    """Per row, whether its ROI cells declare anything: a num_ROI other than 0, or a
    ROI_coords or ROI_frames text that is not empty (missing, blank, ``[]``, ``()``).

    `count` is numeric (missing or unreadable counts null), the texts are text; `frames`
    may be left out when the table has no ROI_frames. A row declaring something unusable
    (a count without boxes, a negative count, frames without boxes) does declare: stage 2
    refuses it with the reason, rather than stage 1 dropping it as 3d_without_roi.
    """
    declared = pc.fill_null(pc.not_equal(count, 0), False)
    empty = pa.array(EMPTY_ROI_TEXT, pa.string())
    for text in (coords, frames):
        if text is not None:
            trimmed = pc.utf8_trim_whitespace(text.cast(pa.string()))
            listed = pc.and_not(pc.is_valid(trimmed), pc.is_in(trimmed, value_set=empty))
            declared = pc.or_(declared, listed)
    return declared.to_numpy(zero_copy_only=False)


def parse_coords(text: object) -> Parsed[Box]:
    """Parse an ROI_coords cell into boxes ``(ymin, xmin, ymax, xmax)``."""
    parsed = _parse_field(text, "ROI_coords", RoiReason.MALFORMED_COORDS)
    boxes = tuple(_as_box(entry, index) for index, entry in enumerate(parsed.entries))
    return Parsed(entries=boxes, error=parsed.error)


def parse_frames(text: object) -> Parsed[tuple[int, ...]]:
    """Parse an ROI_frames cell into one tuple of frame indices per ROI, order kept."""
    return _parse_field(text, "ROI_frames", RoiReason.MALFORMED_FRAMES)


def parse_table_int(value: object, column: str, reason: RoiReason) -> int | Rejected | None:
    """A non-negative integer cell (int, or integral float like 2.0); None when missing.

    Anything else (2.5, -1, inf, True, text, above MAX_TABLE_INT) is `Rejected` with
    `reason`; empty or whitespace-only text counts as missing.
    """
    if is_missing(value) or (isinstance(value, str) and not value.strip()):
        return None
    number = _exact_int(value)
    if number is None or number < 0:
        return Rejected(reason, f"{column} {_shorten(repr(value))} is not a non-negative integer")
    if number > MAX_TABLE_INT:
        return Rejected(reason, f"{column} {_shorten(repr(value))} is over {MAX_TABLE_INT}")
    return number


def parse_roi_count(value: object, column: str = ROI_COUNT) -> int | Rejected | None:
    """The ROI count of a num_ROI / num_roi cell; None when missing, count_mismatch if bad."""
    return parse_table_int(value, column, RoiReason.COUNT_MISMATCH)


def _exact_int(value: object) -> int | None:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    number = float(value)
    return int(number) if math.isfinite(number) and number.is_integer() else None


def _shorten(text: str) -> str:
    return text if len(text) <= _SHOW_CHARS else text[:_SHOW_CHARS] + "..."


def _show(token: str) -> str:
    """A token for an error message: quoted, cut short, 'end of text' for the end."""
    return "end of text" if token == _END else _shorten(repr(token))


class _MalformedError(Exception):
    """Internal: the text is not two levels of bracketed, comma-separated values."""


class _Parser:
    """Recursive descent: ``document := seq(seq(value))`` where
    ``seq := open [item ("," item)* [","]] close`` (``[...]`` or ``(...)``)."""

    def __init__(self, text: str) -> None:
        self._tokens = [
            (match.group(), match.start())
            for match in _TOKEN.finditer(text)
            if match.lastgroup != "space"
        ]
        self._tokens.append((_END, len(text)))
        self._pos = 0

    def document(self) -> list[list[str]]:
        rows = self._sequence(lambda: self._sequence(self._value))
        token, at = self._tokens[self._pos]
        if token != _END:
            raise _MalformedError(f"unexpected {_show(token)} at char {at} after the list")
        return rows

    def _next(self) -> tuple[str, int]:
        token = self._tokens[self._pos]
        if token[0] != _END:
            self._pos += 1
        return token

    def _peek(self) -> str:
        return self._tokens[self._pos][0]

    def _value(self) -> str:
        token, at = self._next()
        if token == _END or token in _PUNCT:
            raise _MalformedError(f"expected a value, found {_show(token)} at char {at}")
        return token

    def _sequence(self, item: Callable[[], T]) -> list[T]:
        token, at = self._next()
        if token not in _CLOSER:
            raise _MalformedError(f"expected '[' or '(', found {_show(token)} at char {at}")
        closer = _CLOSER[token]
        items = []
        while self._peek() != closer:
            items.append(item())
            token, at = self._next()
            if token == closer:
                return items
            if token != ",":
                raise _MalformedError(
                    f"expected ',' or {closer!r}, found {_show(token)} at char {at}"
                )
        self._next()
        return items


def _parse_field(value: object, field: str, malformed: RoiReason) -> Parsed[tuple[int, ...]]:
    if is_missing(value):
        return Parsed()
    if not isinstance(value, str):
        return Parsed(error=Rejected(malformed, f"{field} is a {type(value).__name__}, not text"))
    if len(value) > MAX_TEXT_CHARS:
        return Parsed(
            error=Rejected(malformed, f"{field} is {len(value)} chars, over {MAX_TEXT_CHARS}")
        )
    if not value.strip():
        return Parsed()
    try:
        rows = _Parser(value).document()
    except _MalformedError as error:
        return Parsed(error=Rejected(malformed, f"{field}: {error}"))
    return Parsed(
        entries=tuple(_as_ints(row, f"{field}[{index}]") for index, row in enumerate(rows))
    )


def _as_ints(tokens: list[str], where: str) -> tuple[int, ...] | Rejected:
    values = []
    for token in tokens:
        value = int(token) if _INTEGER.fullmatch(token) else None
        if value is None or not _INT64_MIN <= value <= _INT64_MAX:
            return Rejected(
                RoiReason.NON_INTEGER, f"{where}: {_show(token)} is not a 64-bit integer"
            )
        values.append(value)
    return tuple(values)


def _as_box(entry: tuple[int, ...] | Rejected, index: int) -> Box | Rejected:
    if isinstance(entry, Rejected):
        return entry
    if len(entry) != 4:
        return Rejected(
            RoiReason.WRONG_ARITY,
            f"ROI_coords[{index}] has {len(entry)} values, not 4: {_shorten(str(list(entry)))}",
        )
    ymin, xmin, ymax, xmax = entry
    return (ymin, xmin, ymax, xmax)
