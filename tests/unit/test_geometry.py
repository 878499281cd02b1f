"""Box and window geometry: examples and properties."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedpatch.geometry import (
    box_area,
    clip_box,
    fit_start,
    grow_box,
    iou,
    mirror_box_x,
    mirror_box_y,
    touches_any,
    window_around,
    window_box,
)
from helpers.box_strategies import any_box, good_boxes, sides

QUICK = settings(max_examples=200, deadline=None)


def test_geometry_examples():
    assert iou((0, 0, 10, 10), (0, 5, 10, 15)) == pytest.approx(1 / 3)
    assert iou((0, 0, 10, 10), (10, 10, 20, 20)) == 0.0
    assert clip_box((-5, 70, 20, 90), 100, 80) == (0, 70, 20, 80)
    assert clip_box((0, 80, 10, 90), 100, 80) is None
    assert mirror_box_x((1, 10, 5, 30), 100) == (1, 70, 5, 90)
    assert mirror_box_y((1, 10, 5, 30), 100) == (95, 10, 99, 30)
    assert grow_box((10, 10, 20, 20), 3) == (7, 7, 23, 23)
    assert window_box(5, 6, 4) == (5, 6, 9, 10)
    assert fit_start(90, 100, 20) == 80
    assert fit_start(-5, 100, 20) == 0
    assert fit_start(3, 10, 20) == 0  # the image is smaller than the window


@QUICK
@given(any_box, sides, sides)
def test_clip_box_stays_inside_and_keeps_the_intersection(box, rows, columns):
    clipped = clip_box(box, rows, columns)
    overlap = box_area(box) and iou(box, (0, 0, rows, columns)) > 0
    if not overlap:
        assert clipped is None
        return
    ymin, xmin, ymax, xmax = clipped
    assert 0 <= ymin < ymax <= rows
    assert 0 <= xmin < xmax <= columns
    assert box_area(clipped) == round(iou(box, clipped) * box_area(box))
    assert clip_box(clipped, rows, columns) == clipped


@QUICK
@given(good_boxes(), any_box)
def test_iou_symmetric_and_bounded(a, b):
    assert iou(a, b) == iou(b, a)
    assert 0.0 <= iou(a, b) <= 1.0
    assert iou(a, a) == 1.0


@QUICK
@given(any_box, sides)
def test_mirrors_are_involutions_keeping_area_and_containment(box, side):
    for mirror in (mirror_box_x, mirror_box_y):
        mirrored = mirror(box, side)
        assert mirror(mirrored, side) == box
        assert box_area(mirrored) == box_area(box)
        if clip_box(box, side, side) == box:  # inside the image: so is its mirror
            assert clip_box(mirrored, side, side) == mirrored


@QUICK
@given(good_boxes(), st.lists(any_box, max_size=4), st.integers(0, 20))
def test_touching_is_a_shared_pixel_and_growing_reaches_further(box, others, margin):
    assert touches_any(box, others) == any(iou(box, other) > 0 for other in others)
    assert not touches_any(box, [])
    if touches_any(box, others):
        assert touches_any(grow_box(box, margin), others)
    grown = grow_box(box, margin)
    assert box_area(grown) == (box[2] - box[0] + 2 * margin) * (box[3] - box[1] + 2 * margin)


@QUICK
@given(st.integers(-300, 300), st.integers(1, 150), st.integers(1, 100))
def test_fit_start_is_inside_and_moves_only_when_needed(start, extent, size):
    fitted = fit_start(start, extent, size)
    assert 0 <= fitted <= max(extent - size, 0)
    if 0 <= start <= extent - size:
        assert fitted == start


@QUICK
@given(
    st.integers(0, 200),
    st.integers(0, 200),
    st.integers(1, 150),
    st.integers(1, 150),
    st.integers(1, 100),
)
def test_window_around_contains_the_pixel_and_stays_inside(y, x, rows, columns, size):
    y, x = min(y, rows - 1), min(x, columns - 1)
    y0, x0 = window_around(y, x, rows, columns, size)
    for start, pixel, extent in ((y0, y, rows), (x0, x, columns)):
        assert start <= pixel < start + size
        assert 0 <= start <= max(extent - size, 0)
    assert box_area(window_box(y0, x0, size)) == size * size
