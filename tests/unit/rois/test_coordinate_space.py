"""The maintainers' PNG flip rule, coordinate columns, and boxes mapped between spaces."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedpatch.geometry import Mirror, box_area, swap_axes
from embedpatch.io.tables import coords_source
from embedpatch.rois.coordinate_space import (
    PngRule,
    ViewFacts,
    parse_orientation,
    png_mirror,
)
from helpers.box_strategies import good_boxes

AS_RUN, AS_WRITTEN = PngRule(), PngRule(vertical=True, missing_orientation=True)

# (orientation, laterality, view) -> mirror as run (left-right only), as written (with top-bottom)
RULE_CASES = [
    (("A", "R"), "L", "CC", Mirror.NONE, Mirror.NONE),
    (("P", "L"), "R", "CC", Mirror.X, Mirror.X),
    (("A", "L"), "L", "CC", Mirror.NONE, Mirror.Y),  # left CC, rows towards its own side
    (("P", "R"), "R", "CC", Mirror.X, Mirror.XY),
    (("A", "FR"), "L", "MLO", Mirror.NONE, Mirror.NONE),
    (("P", "FL"), "R", "MLO", Mirror.X, Mirror.X),
    (("A", "HL"), "L", "MLO", Mirror.NONE, Mirror.Y),
    (("A", "H"), "L", "ML", Mirror.NONE, Mirror.Y),
    (("P", "HR"), "R", "MLO", Mirror.X, Mirror.XY),
    (("P", "HL"), "R", "MLO", Mirror.X, Mirror.X),  # HL is head-first only for a left image
    (("P", "L"), "R", "XCCL", Mirror.NONE, Mirror.NONE),  # other views are never flipped
    (("P", "L"), "R", "LM", Mirror.NONE, Mirror.NONE),
]


@pytest.mark.parametrize(("orientation", "laterality", "view", "as_run", "as_written"), RULE_CASES)
def test_png_mirror_follows_the_notebook(orientation, laterality, view, as_run, as_written):
    facts = ViewFacts(orientation, laterality, view)
    assert png_mirror(facts, AS_RUN) is as_run
    assert png_mirror(facts, AS_WRITTEN) is as_written


@pytest.mark.parametrize("orientation", [None, ("P",)])
def test_without_orientation_only_the_intended_branch_flips_right_images(orientation):
    for view in ("CC", "MLO", "ML"):
        assert png_mirror(ViewFacts(orientation, "R", view), AS_RUN) is Mirror.NONE
        assert png_mirror(ViewFacts(orientation, "R", view), AS_WRITTEN) is Mirror.X
        assert png_mirror(ViewFacts(orientation, "L", view), AS_WRITTEN) is Mirror.NONE
    assert png_mirror(ViewFacts(orientation, "R", "XCCL"), AS_WRITTEN) is Mirror.NONE


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        (["P", "L"], ("P", "L")),
        ("('P', 'L')", ("P", "L")),
        ("P\\FL", ("P", "FL")),
        ("", None),
        ("()", None),
        (None, None),
        (3.5, None),
    ],
)
def test_orientation_cells_and_elements_parse(value, parsed):
    assert parse_orientation(value) == parsed


@pytest.mark.parametrize(
    ("columns", "chosen"),
    [
        (["ROI_coords", "DCM_ROI_coords", "PNG_ROI_coords"], "DCM_ROI_coords"),
        (["PNG_ROI_coords", "ROI_coords"], "ROI_coords"),
        (["PNG_ROI_coords"], "PNG_ROI_coords"),
        (["num_ROI"], None),
    ],
)
def test_the_coordinate_column_is_chosen_by_name(columns, chosen):
    assert coords_source(columns) == chosen


ROWS, COLUMNS = 120, 90


@settings(max_examples=200, deadline=None)
@given(box=good_boxes(), mirror=st.sampled_from(list(Mirror)))
def test_a_mirror_is_its_own_inverse_and_keeps_the_box_size(box, mirror):
    mirrored = mirror.apply(box, ROWS, COLUMNS)
    assert mirror.apply(mirrored, ROWS, COLUMNS) == box
    assert box_area(mirrored) == box_area(box)
    assert Mirror.of(mirror.flips_x, mirror.flips_y) is mirror


@settings(max_examples=200, deadline=None)
@given(box=good_boxes())
def test_swapping_axes_twice_gives_the_box_back(box):
    assert swap_axes(swap_axes(box)) == box
