"""Tests of ROI validation against the image's real size (box geometry: test_geometry)."""

import math
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedpatch.geometry import Mirror
from embedpatch.reasons import RoiReason, RoiWarning
from embedpatch.rois.validate import (
    AcceptedRoi,
    ImageBounds,
    ImageRoiResult,
    RoiRejection,
    RoiRow,
    ValidationPolicy,
    validate_image_rois,
)
from helpers.box_strategies import any_box, good_boxes, sides, value

QUICK = settings(max_examples=200, deadline=None)
IMAGE = ImageBounds(rows=100, columns=80, n_frames=12)
CALLER_REASONS = {
    RoiReason.IMAGE_MISSING,
    RoiReason.IMAGE_UNREADABLE,
    RoiReason.IMAGE_OUTSIDE_ROOT,
    RoiReason.IMAGE_UNAVAILABLE,
    RoiReason.IMAGE_CHANGED,
    RoiReason.SUSPECT_FLIP,
}


def row_2d(coords, num_roi=None, frames="[]", **table):
    return RoiRow("2D", num_roi, coords, frames, **table)


def row_3d(coords, frames, num_roi=None, **table):
    return RoiRow("3D", num_roi, coords, frames, **table)


DEFAULT = ValidationPolicy()
# (expected reason, row, policy, expected roi_index)
REASON_CASES = [
    ("malformed_coords", row_2d("[[10, 10, 20, 20]", 1), DEFAULT, -1),
    ("malformed_frames", row_3d("[[10, 10, 20, 20]]", "[[1, 2]", 1), DEFAULT, -1),
    ("count_mismatch", row_2d("[[10, 10, 20, 20]]", 2), DEFAULT, -1),
    ("wrong_arity", row_2d("[[10, 10, 20, 20], [1, 2, 3]]", 2), DEFAULT, 1),
    ("non_integer", row_2d("[[10, 10, 20.5, 20], [1, 2, 3, 4]]", 2), DEFAULT, 0),
    ("inverted_box", row_2d("[[1, 2, 3, 4], [30, 10, 20, 20]]"), DEFAULT, 1),
    ("empty_box", row_2d("[[10, 10, 10, 20]]"), DEFAULT, 0),
    ("outside_image", row_2d("[[1, 2, 3, 4], [10, 120, 20, 130]]"), DEFAULT, 1),
    ("crosses_border", row_2d("[[90, 10, 120, 20]]"), ValidationPolicy(border="reject"), 0),
    (
        "frames_missing",
        row_3d("[[1, 2, 3, 4], [10, 10, 20, 20]]", "[[1], []]"),
        DEFAULT,
        1,
    ),
    ("frames_out_of_range", row_3d("[[10, 10, 20, 20]]", "[[11, 12]]"), DEFAULT, 0),
    (
        "frames_on_2d",
        row_2d("[[10, 10, 20, 20]]", 1, "[[0]]"),
        ValidationPolicy(frames_on_2d="reject"),
        -1,
    ),
    ("suspect_axes_swapped", row_2d("[[1, 2, 3, 4], [10, 85, 20, 95]]"), DEFAULT, 1),
    (
        "frames_length_mismatch",
        row_3d("[[1, 2, 3, 4], [5, 6, 7, 8]]", "[[1]]"),
        DEFAULT,
        -1,
    ),
    ("dimension_mismatch", row_2d("[[10, 10, 20, 20]]", table_rows=3328), DEFAULT, -1),
    (
        "near_duplicate",
        row_2d("[[10, 10, 50, 50], [11, 10, 50, 51]]"),
        ValidationPolicy(near_duplicate="drop"),
        1,
    ),
]


def test_every_validation_reason_has_a_case():
    covered = {RoiReason(name) for name, *_ in REASON_CASES}
    assert covered == set(RoiReason) - CALLER_REASONS


@pytest.mark.parametrize(("reason", "row", "policy", "roi_index"), REASON_CASES)
def test_each_reason(reason, row, policy, roi_index):
    result = validate_image_rois(row, IMAGE, policy)
    matching = [rej for rej in result.rejected if rej.reason == reason]
    assert [rej.roi_index for rej in matching] == [roi_index]
    if roi_index == -1:
        assert result.whole_row_rejection == matching[0]
    else:
        assert result.whole_row_rejection is None
        assert len(result.accepted) + len(result.rejected) == result.declared


@pytest.mark.parametrize(
    ("row", "detail"),
    [
        (row_3d("[[10, 10, 20, 20]]", "[[14]]"), "frame 14 not in [0, 12)"),
        (row_2d("[[10, 10, 20, 20]]", 2), "1 boxes in ROI_coords, num_ROI 2"),
        (row_2d("[[10, 10, 20, 20]]", 2.5), "num_ROI 2.5 is not a non-negative integer"),
        (row_2d("[[1, 2, 3, 4]]", table_columns=81.0), "table Columns 81, image 80"),
        (row_2d("[[30, 10, 20, 20]]"), "box [30, 10, 20, 20]: height -10, width 10"),
        (row_2d("[[1, 2, 3.0, 4]]"), "ROI_coords[0]: '3.0' is not a 64-bit integer"),
    ],
)
def test_details_name_the_offending_value(row, detail):
    assert validate_image_rois(row, IMAGE).rejected[0].detail == detail


def test_doc_examples_are_accepted():
    dbt = row_3d("[[30, 11, 40, 17]]", "[[3, 1, 2, 3]]", num_roi=1, table_frames=12.0)
    (roi,) = validate_image_rois(dbt, IMAGE).accepted
    assert roi == AcceptedRoi(0, 30, 11, 40, 17, frames=(1, 2, 3))
    legacy = RoiRow("cview", 2.0, "((1, 2, 3, 4), (50, 60, 100, 80))", "()", 100, 80, 1)
    result = validate_image_rois(legacy, IMAGE)
    assert [roi.box for roi in result.accepted] == [(1, 2, 3, 4), (50, 60, 100, 80)]
    assert all(roi.frames == () and roi.warnings == () for roi in result.accepted)


def test_border_clip_policy_clips_and_warns():
    row = row_2d("[[-5, 70, 20, 90], [90, -3, 101, 5]]")
    result = validate_image_rois(row, IMAGE, ValidationPolicy(border="clip"))
    assert [roi.box for roi in result.accepted] == [(0, 70, 20, 80), (90, 0, 100, 5)]
    assert all(roi.clipped and roi.warnings == (RoiWarning.CLIPPED,) for roi in result.accepted)


def test_box_touching_the_edge_is_not_clipped():
    (roi,) = validate_image_rois(row_2d("[[0, 0, 100, 80]]"), IMAGE).accepted
    assert not roi.clipped


def test_near_duplicate_flag_policy():
    row = row_2d("[[10, 10, 50, 50], [11, 10, 50, 51], [60, 60, 70, 70]]")
    result = validate_image_rois(row, IMAGE, ValidationPolicy(near_duplicate="flag"))
    assert [roi.near_duplicate_of for roi in result.accepted] == [None, 0, None]
    assert result.accepted[1].warnings == (RoiWarning.NEAR_DUPLICATE,)


def test_near_duplicates_only_of_originals_so_flag_and_drop_agree():
    # B overlaps A and C, A and C overlap too little: only B is a near-duplicate.
    row = row_2d("[[0, 0, 10, 10], [0, 1, 10, 11], [0, 2, 10, 12]]")
    policy = ValidationPolicy(near_duplicate_iou=0.7)
    flagged = validate_image_rois(row, IMAGE, policy)
    dropped = validate_image_rois(row, IMAGE, ValidationPolicy(near_duplicate="drop"))
    assert [roi.near_duplicate_of for roi in flagged.accepted] == [None, 0, None]
    assert [roi.roi_index for roi in dropped.accepted] == [0, 2]
    assert dropped.rejected[0].detail == "IoU 0.818 with ROI 0 > 0.7"


@pytest.mark.parametrize("frames", ["[[3]]", "[[]]", "((3,),)"])
@pytest.mark.parametrize("image_type", ["2D", "cview"])
def test_strict_policy_rejects_the_row_for_any_frames_entry_on_a_flat_image(image_type, frames):
    row = RoiRow(image_type, 1, "[[1, 2, 3, 4]]", frames)
    strict = ValidationPolicy(frames_on_2d="reject")
    rejection = validate_image_rois(row, IMAGE, strict).whole_row_rejection
    assert rejection.reason == RoiReason.FRAMES_ON_2D


def test_3d_without_frames_rejects_each_roi():
    result = validate_image_rois(row_3d("[[1, 2, 3, 4], [5, 6, 7, 8]]", math.nan), IMAGE)
    assert [(rej.roi_index, rej.reason) for rej in result.rejected] == [
        (0, RoiReason.FRAMES_MISSING),
        (1, RoiReason.FRAMES_MISSING),
    ]


def test_negative_frame_is_out_of_range():
    result = validate_image_rois(row_3d("[[1, 2, 3, 4]]", "[[-1, 2]]"), IMAGE)
    assert result.rejected[0].reason == RoiReason.FRAMES_OUT_OF_RANGE


def test_frame_count_compared_on_3d_rows_only():
    mismatch = validate_image_rois(row_3d("[[1, 2, 3, 4]]", "[[1]]", table_frames=13), IMAGE)
    assert mismatch.whole_row_rejection.reason == RoiReason.DIMENSION_MISMATCH
    flat = validate_image_rois(row_2d("[[1, 2, 3, 4]]", table_frames=13), IMAGE)
    assert flat.whole_row_rejection is None


def test_missing_count_and_table_dims_are_not_checked():
    row = row_2d("[[1, 2, 3, 4], [5, 6, 7, 8]]", math.nan, table_rows=math.nan)
    result = validate_image_rois(row, IMAGE)
    assert result.declared == 2
    assert len(result.accepted) == 2


def test_whole_row_problems_reported_even_without_rois():
    result = validate_image_rois(row_2d("[]", 0, table_columns=3328), IMAGE)
    assert result.declared == 0
    assert result.whole_row_rejection.reason == RoiReason.DIMENSION_MISMATCH


def test_first_whole_row_problem_wins():
    row = row_2d("[[1, 2, 3, 4]]", 3, "[[1]]", table_rows=7)
    assert validate_image_rois(row, IMAGE).rejected == (
        RoiRejection(-1, RoiReason.COUNT_MISMATCH, "1 boxes in ROI_coords, num_ROI 3"),
    )


def test_result_refuses_broken_accounting():
    roi = AcceptedRoi(0, 1, 2, 3, 4, frames=())
    rejection = RoiRejection(0, RoiReason.EMPTY_BOX, "")
    whole = RoiRejection(-1, RoiReason.COUNT_MISMATCH, "")
    for accepted, rejected, declared in [
        ((roi,), (rejection,), 1),  # counted twice
        ((), (rejection,), 2),  # ROI 1 unaccounted for
        ((roi,), (whole,), 1),  # whole-row rejection beside an accepted ROI
    ]:
        with pytest.raises(ValueError, match="accounting"):
            ImageRoiResult(declared, accepted, rejected)


@pytest.mark.parametrize(
    "make",
    [
        lambda: RoiRow("ROI_SSC", 0, "[]", "[]"),
        lambda: ValidationPolicy(border="pad"),
        lambda: ValidationPolicy(near_duplicate="keep"),
        lambda: ValidationPolicy(near_duplicate_iou=1.5),
    ],
)
def test_bad_settings_raise(make):
    with pytest.raises(ValueError):
        make()


def _serialize(rows, tuples):
    return str(tuple(tuple(row) for row in rows)) if tuples else str([list(row) for row in rows])


@st.composite
def image_rows(draw):
    """Rows mixing valid and broken boxes, counts, frames and table dimensions."""
    image_type = draw(st.sampled_from(["2D", "cview", "3D"]))
    n_frames = draw(st.integers(1, 15)) if image_type == "3D" else 1
    bounds = ImageBounds(draw(sides), draw(sides), n_frames)
    entries = draw(st.lists(st.one_of(good_boxes(), any_box, st.tuples(value)), max_size=6))
    coords = draw(
        st.one_of(
            st.sampled_from([_serialize(entries, False), _serialize(entries, True)]),
            st.text(max_size=20),
            st.just(_serialize(entries, False).replace("1", "1.5")),
        )
    )
    n_boxes = len(entries)
    num_roi = draw(st.sampled_from([n_boxes, n_boxes, n_boxes + 1, None, math.nan, 2.5]))
    counts = [n_boxes, n_boxes, 0, n_boxes + 1] if image_type == "3D" else [0, 0, 0, 1]
    frame_count = draw(st.sampled_from(counts))
    frame_list = st.lists(st.integers(-2, 16), max_size=4)
    frame_lists = draw(st.lists(frame_list, min_size=frame_count, max_size=frame_count))
    frames = _serialize(frame_lists, draw(st.booleans()))
    dims = (bounds.rows, bounds.columns, n_frames)
    table = draw(st.sampled_from([(None, None, None), dims, dims, (bounds.rows + 1, None, None)]))
    row = RoiRow(image_type, num_roi, coords, frames, *table)
    return row, bounds


policies = st.builds(
    ValidationPolicy,
    border=st.sampled_from(["clip", "reject"]),
    near_duplicate_iou=st.sampled_from([0.0, 0.3, 0.7, 1.0]),
)


@QUICK
@given(image_rows(), policies)
def test_every_declared_roi_is_accounted_for_once(row_and_bounds, policy):
    row, bounds = row_and_bounds
    flagged = validate_image_rois(row, bounds, policy)
    indices = sorted(
        [roi.roi_index for roi in flagged.accepted] + [rej.roi_index for rej in flagged.rejected]
    )
    if flagged.whole_row_rejection is not None:
        assert indices == [-1]
    else:
        assert indices == list(range(flagged.declared))
    for roi in flagged.accepted:
        assert 0 <= roi.ymin < roi.ymax <= bounds.rows
        assert 0 <= roi.xmin < roi.xmax <= bounds.columns
        assert all(0 <= f < bounds.n_frames for f in roi.frames)
        assert list(roi.frames) == sorted(set(roi.frames))
        assert bool(roi.frames) == (row.image_type == "3D")
        assert not (roi.clipped and policy.border == "reject")
    dropped = validate_image_rois(row, bounds, replace(policy, near_duplicate="drop"))
    assert {roi.roi_index for roi in flagged.accepted if roi.near_duplicate_of is not None} == {
        rej.roi_index for rej in dropped.rejected if rej.reason == RoiReason.NEAR_DUPLICATE
    }


# ---- frame lists on 2D rows, swapped axes, boxes in another space ------------------------


@pytest.mark.parametrize("image_type", ["2D", "cview"])
def test_frame_lists_on_2d_rows_are_checked_per_roi(image_type):
    row = RoiRow(
        image_type,
        4,
        "[[1, 1, 5, 5], [10, 10, 20, 20], [30, 30, 40, 40], [50, 5, 60, 9]]",
        "[[0], [], [0, 0], [3]]",
    )
    result = validate_image_rois(row, IMAGE)
    assert [roi.roi_index for roi in result.accepted] == [0, 1, 2]
    assert [roi.frames for roi in result.accepted] == [(), (), ()]
    assert [roi.frames_on_2d for roi in result.accepted] == [True, False, True]
    assert result.accepted[0].warnings == (RoiWarning.FRAMES_ON_2D,)
    (rejection,) = result.rejected
    assert (rejection.roi_index, rejection.reason) == (3, RoiReason.FRAMES_OUT_OF_RANGE)
    assert rejection.detail == "frame 3 not in [0, 1)"


def test_an_empty_frame_list_on_a_2d_row_is_no_frames():
    for frames in ("[]", "()", None, "[[]]"):
        (roi,) = validate_image_rois(row_2d("[[10, 10, 20, 20]]", 1, frames), IMAGE).accepted
        assert roi.warnings == ()


def test_frame_lists_on_2d_rows_must_match_the_boxes():
    row = row_2d("[[1, 1, 5, 5], [10, 10, 20, 20]]", 2, "[[0]]")
    rejection = validate_image_rois(row, IMAGE).whole_row_rejection
    assert rejection.reason == RoiReason.FRAMES_LENGTH_MISMATCH


SWAPPED = "[[10, 85, 20, 95], [50, 75, 60, 95]]"  # outside / crossing; fit as [x, y, x, y]


def test_swapped_axes_flag_keeps_what_can_be_kept():
    result = validate_image_rois(row_2d(SWAPPED), IMAGE)
    assert [(r.roi_index, r.reason) for r in result.rejected] == [
        (0, RoiReason.SUSPECT_AXES_SWAPPED)
    ]
    (roi,) = result.accepted
    assert roi.box == (50, 75, 60, 80)
    assert roi.warnings == (RoiWarning.CLIPPED, RoiWarning.SUSPECT_AXES_SWAPPED)


def test_swapped_axes_fix_reads_the_box_swapped():
    result = validate_image_rois(row_2d(SWAPPED), IMAGE, ValidationPolicy(axes_swapped="fix"))
    assert [roi.box for roi in result.accepted] == [(85, 10, 95, 20), (75, 50, 95, 60)]
    assert all(roi.axes_swapped and roi.axes_fixed for roi in result.accepted)
    assert not any(roi.clipped for roi in result.accepted)


def test_swapped_axes_reject_refuses_both():
    result = validate_image_rois(row_2d(SWAPPED), IMAGE, ValidationPolicy(axes_swapped="reject"))
    assert [r.reason for r in result.rejected] == [RoiReason.SUSPECT_AXES_SWAPPED] * 2


def test_boxes_inside_or_overshooting_a_little_are_not_suspected_of_swapped_axes():
    # the second crosses the right edge by a third of its width; it would fit swapped
    result = validate_image_rois(row_2d("[[10, 20, 30, 40], [50, 70, 60, 85]]"), IMAGE)
    assert [roi.axes_swapped for roi in result.accepted] == [False, False]
    assert result.accepted[1].clipped


@QUICK
@given(box=good_boxes(), mirror=st.sampled_from(list(Mirror)))
def test_mirrored_validation_maps_each_accepted_box(box, mirror):
    row = row_2d(str([list(box)]))
    plain = validate_image_rois(row, IMAGE)
    mapped = validate_image_rois(row, IMAGE, mirror=mirror)
    assert [r.reason for r in plain.rejected] == [r.reason for r in mapped.rejected]
    assert [mirror.apply(roi.box, IMAGE.rows, IMAGE.columns) for roi in plain.accepted] == [
        roi.box for roi in mapped.accepted
    ]
