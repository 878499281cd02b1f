"""Tests of the eval-free ROI_coords / ROI_frames / num_ROI parsing."""

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedpatch.reasons import RoiReason
from embedpatch.rois.columns import rows_with_roi_cells
from embedpatch.rois.parse import (
    MAX_TEXT_CHARS,
    Parsed,
    Rejected,
    declares_rois,
    parse_coords,
    parse_frames,
    parse_roi_count,
    parse_table_int,
)

QUICK = settings(max_examples=200, deadline=None)


@pytest.mark.parametrize(
    ("text", "boxes"),
    [
        ("[[1401, 980, 1510, 1148]]", ((1401, 980, 1510, 1148),)),
        ("((1951, 347, 2244, 626),)", ((1951, 347, 2244, 626),)),
        (
            "((992, 202, 1276, 647), (2098, 302, 2647, 1089))",
            ((992, 202, 1276, 647), (2098, 302, 2647, 1089)),
        ),
        ("[(1, 2, 3, 4), [5, 6, 7, 8,],]", ((1, 2, 3, 4), (5, 6, 7, 8))),
        ("((1, 2, 3, 4))", ((1, 2, 3, 4),)),  # read structurally, unlike Python
        ("\n [ [ -1 ,2,3 , 4 ] ] \t", ((-1, 2, 3, 4),)),
        ("[[007, 0, 0, 0]]", ((7, 0, 0, 0),)),
    ],
)
def test_parse_coords_serializations(text, boxes):
    assert parse_coords(text) == Parsed(entries=boxes)


@pytest.mark.parametrize("value", ["[]", "()", "", "  \n", "[ ]", None, math.nan, np.nan, pd.NA])
def test_empty_and_missing_cells_are_empty(value):
    assert parse_coords(value) == Parsed()
    assert parse_frames(value) == Parsed()


@pytest.mark.parametrize(
    "text",
    [
        "[1401, 980, 1510, 1148]",  # one level only
        "[[[1, 2, 3, 4]]]",  # three levels
        "[[1, 2, 3, 4]",  # truncated
        "[[1, 2, 3, 4]] [[5, 6, 7, 8]]",  # trailing text
        "[[1 2 3 4]]",  # missing commas
        "[[1, 2, 3, 4)]",  # mismatched brackets
        "[[1,, 2, 3, 4]]",
        "[,]",
        "(,)",
        "{1: 2}",
        "1401",
        "__import__('os').system('true')",
        "[" * 5000 + "]" * 5000,
        "[[1, 2, 3, 4]]" + " " * MAX_TEXT_CHARS,  # too long, even if only by blanks
    ],
)
def test_malformed_text_rejects_the_whole_field(text):
    assert parse_coords(text).error.reason == RoiReason.MALFORMED_COORDS
    assert parse_coords(text).entries == ()
    assert parse_frames(text).error.reason == RoiReason.MALFORMED_FRAMES


@pytest.mark.parametrize("value", [5, 2.5, b"[[1, 2, 3, 4]]", [[1, 2, 3, 4]]])
def test_non_text_cells_are_malformed(value):
    assert parse_coords(value).error.reason == RoiReason.MALFORMED_COORDS


def test_malformed_detail_names_token_and_position():
    assert "found ')' at char 12" in parse_coords("[[1, 2, 3, 4)]").error.detail


@pytest.mark.parametrize(
    "bad", ["10.5", "10.0", "1e3", "nan", "'7'", "+1", "1_000", "٣", "None", "2**70"]
)
def test_non_integer_rejects_only_its_entry(bad):
    parsed = parse_coords(f"[[1, 2, 3, 4], [1, {bad}, 3, 4]]")
    assert parsed.error is None
    assert parsed.entries[0] == (1, 2, 3, 4)
    assert parsed.entries[1].reason == RoiReason.NON_INTEGER
    assert repr(bad) in parsed.entries[1].detail


def test_integers_beyond_64_bits_are_non_integer():
    assert parse_coords(f"[[{2**63 - 1}, {-(2**63)}, 0, 0]]").entries[0][0] == 2**63 - 1
    for big in (2**63, -(2**63) - 1, 10**30):
        entry = parse_coords(f"[[{big}, 0, 0, 0]]").entries[0]
        assert entry.reason == RoiReason.NON_INTEGER


@pytest.mark.parametrize("bad", ["[1, 2, 3]", "[1, 2, 3, 4, 5]", "[]", "()"])
def test_wrong_arity_rejects_only_its_box(bad):
    parsed = parse_coords(f"[[9, 9, 9, 9], {bad}]")
    assert parsed.entries[0] == (9, 9, 9, 9)
    assert parsed.entries[1].reason == RoiReason.WRONG_ARITY


def test_non_integer_is_reported_before_wrong_arity():
    assert parse_coords("[[1, 2.5]]").entries[0].reason == RoiReason.NON_INTEGER


@pytest.mark.parametrize(
    ("text", "frames"),
    [
        ("[[36, 37, 38, 39, 40]]", ((36, 37, 38, 39, 40),)),
        ("[[14]]", ((14,),)),
        ("((14,),)", ((14,),)),
        ("[[3, 1, 3], []]", ((3, 1, 3), ())),  # order and repeats kept; validation sorts
    ],
)
def test_parse_frames(text, frames):
    assert parse_frames(text) == Parsed(entries=frames)


def test_frames_non_integer_and_malformed():
    assert parse_frames("[[1], [2.0]]").entries[1].reason == RoiReason.NON_INTEGER
    assert parse_frames("[14, 15]").error.reason == RoiReason.MALFORMED_FRAMES


@pytest.mark.parametrize(
    ("value", "count"),
    [
        (2, 2),
        (0, 0),
        (2.0, 2),
        (np.int64(3), 3),
        (np.float32(1.0), 1),
        (None, None),
        (math.nan, None),
        (pd.NA, None),
        ("", None),
    ],
)
def test_parse_roi_count(value, count):
    assert parse_roi_count(value) == count


@pytest.mark.parametrize("value", [2.5, -1, math.inf, True, "2", [2]])
def test_parse_roi_count_rejects(value):
    rejected = parse_roi_count(value, "num_roi")
    assert rejected.reason == RoiReason.COUNT_MISMATCH
    assert rejected.detail.startswith("num_roi ")


def test_parse_table_int_uses_the_given_reason():
    assert parse_table_int(3328.0, "Rows", RoiReason.DIMENSION_MISMATCH) == 3328
    rejected = parse_table_int(3328.5, "Rows", RoiReason.DIMENSION_MISMATCH)
    assert rejected == Rejected(
        RoiReason.DIMENSION_MISMATCH, "Rows 3328.5 is not a non-negative integer"
    )


# --- properties ---------------------------------------------------------------------

GRAMMAR_TOKENS = ["[", "]", "(", ")", ",", " ", "-", "0", "7", "42", "1.5", "x", "\n"]
grammarish = st.lists(st.sampled_from(GRAMMAR_TOKENS), max_size=40).map("".join)


def _assert_well_formed(parsed, malformed):
    if parsed.error is not None:
        assert parsed.error.reason == malformed
        assert parsed.entries == ()
    for entry in parsed.entries:
        if isinstance(entry, Rejected):
            assert entry.reason in (RoiReason.NON_INTEGER, RoiReason.WRONG_ARITY)
        else:
            assert all(isinstance(value, int) for value in entry)


@QUICK
@given(st.one_of(st.text(), grammarish))
def test_parsing_never_raises(text):
    _assert_well_formed(parse_coords(text), RoiReason.MALFORMED_COORDS)
    _assert_well_formed(parse_frames(text), RoiReason.MALFORMED_FRAMES)
    parse_roi_count(text)


nested = st.recursive(
    st.integers(-5, 100),
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.lists(children, max_size=4).map(tuple)
    ),
    max_leaves=12,
)


def _is_two_levels(value):
    return isinstance(value, list | tuple) and all(
        isinstance(row, list | tuple) and all(isinstance(v, int) for v in row) for row in value
    )


@QUICK
@given(nested)
def test_accepts_exactly_the_two_level_python_literals(value):
    parsed = parse_frames(repr(value))
    if _is_two_levels(value):
        assert parsed == Parsed(entries=tuple(tuple(row) for row in value))
    else:
        assert parsed.error.reason == RoiReason.MALFORMED_FRAMES


coordinate = st.integers(min_value=-(2**63), max_value=2**63 - 1)
boxes = st.lists(st.tuples(coordinate, coordinate, coordinate, coordinate), max_size=9)
frame_lists = st.lists(st.lists(st.integers(-5, 300), max_size=8).map(tuple), max_size=9)


def _messy(rows, draw):
    """Serialize with random bracket kinds, blanks and trailing commas."""

    def seq(items):
        opener, closer = draw(st.sampled_from(["[]", "()"]))
        blank = draw(st.sampled_from(["", " ", "\n  "]))
        trailing = "," if items and draw(st.booleans()) else ""
        return f"{opener}{blank}{(',' + blank).join(items)}{trailing}{blank}{closer}"

    return seq([seq([str(value) for value in row]) for row in rows])


@QUICK
@given(boxes, st.data())
def test_boxes_round_trip(box_list, data):
    expected = Parsed(entries=tuple(box_list))
    assert parse_coords(str([list(box) for box in box_list])) == expected  # current style
    assert parse_coords(str(tuple(box_list))) == expected  # older tuple style
    assert parse_coords(_messy(box_list, data.draw)) == expected


@QUICK
@given(frame_lists, st.data())
def test_frames_round_trip(frames, data):
    expected = Parsed(entries=tuple(frames))
    assert parse_frames(str([list(row) for row in frames])) == expected
    assert parse_frames(str(tuple(frames))) == expected
    assert parse_frames(_messy(frames, data.draw)) == expected


# (num_ROI, ROI_coords, ROI_frames) -> whether the row declares ROIs
DECLARATIONS = [
    (0, "[]", "[]", False),
    (None, None, None, False),
    (0, " () ", "", False),
    (1, "[]", "[]", True),  # a count without boxes: stage 2's count_mismatch
    (-1, "[]", None, True),  # a negative count: stage 2's count_mismatch
    (0, "[[1, 2, 3, 4]]", "[]", True),
    (None, "((1, 2, 3, 4),)", None, True),
    (0, "[]", "[[3]]", True),  # frames without boxes: stage 2's frames_length_mismatch
    (0, "[[]]", None, True),
]


@pytest.mark.parametrize(("count", "coords", "frames", "declares"), DECLARATIONS)
def test_one_rule_for_both_stages_says_which_rows_declare_rois(count, coords, frames, declares):
    """Stage 1 (typed Arrow batches) and stage 2 (raw pandas cells) ask the same function."""
    typed = declares_rois(
        pa.array([count], pa.int64()), pa.array([coords], pa.string()), pa.array([frames])
    )
    assert typed.tolist() == [declares]
    raw = pd.DataFrame(
        {"num_ROI": [count], "ROI_coords": [coords], "ROI_frames": [frames]}, dtype=object
    )
    assert rows_with_roi_cells(raw).tolist() == [declares]


def test_stage_2_reads_unusable_counts_as_missing():
    raw = pd.DataFrame(
        {"num_ROI": ["two", 2.0, True], "ROI_coords": [None] * 3, "ROI_frames": [None] * 3}
    )
    assert rows_with_roi_cells(raw).tolist() == [False, True, True]
