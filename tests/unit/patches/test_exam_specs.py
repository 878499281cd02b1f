"""Each exam's specification: canonical, complete, unchanged by row order, and built again
exactly when one of the cells it is built from changed."""

import json
from numbers import Integral

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedpatch.patches.exam_specs import (
    build_exam_specs,
    exam_digests,
    update_exam_specs,
)
from helpers.spec_tables import ACC_A, ACC_B, IMAGES, ROIS, image, roi


def test_one_spec_per_exam_with_rois():
    specs = build_exam_specs(ROIS, IMAGES.iloc[0:0], 0)
    assert sorted(specs) == sorted([str(ACC_A), str(ACC_B)])
    exam = json.loads(specs[str(ACC_A)])
    assert exam["acc_anon"] == ACC_A  # 16 digits, exact
    assert [r["roi_index"] for r in exam["images"][0]["rois"]] == [0, 1]
    assert exam["images"][0]["avoid"] == [[10, 20, 30, 40], [50, 60, 70, 80]]


def test_specs_do_not_depend_on_row_order():
    shuffled = ROIS.sample(frac=1, random_state=3)
    assert build_exam_specs(shuffled, IMAGES, 2) == build_exam_specs(ROIS, IMAGES, 2)


def test_negatives_add_images_and_exams_without_rois():
    specs = build_exam_specs(ROIS, IMAGES, 2)
    assert str(42) in specs
    exam = json.loads(specs[str(ACC_A)])
    assert [(i["anon_dicom_path"], i["negatives"]) for i in exam["images"]] == [
        ("a/1.dcm", 2),
        ("a/2.dcm", 2),
    ]
    exam_b = json.loads(specs[str(ACC_B)])
    assert exam_b["images"][0]["negatives"] == 0  # not a candidate


def test_suspect_flip_keeps_negatives_off_its_mirror_too():
    flipped = pd.DataFrame([roi("a/1.dcm", ACC_A, 0, (10, 20, 30, 40), suspect_flip=True)])
    exam = json.loads(build_exam_specs(flipped, IMAGES.iloc[0:0], 0)[str(ACC_A)])
    assert exam["images"][0]["avoid"] == [[10, 20, 30, 40], [10, 60, 30, 80]]
    upside_down = flipped.assign(mirror="y")
    exam = json.loads(build_exam_specs(upside_down, IMAGES.iloc[0:0], 0)[str(ACC_A)])
    assert exam["images"][0]["avoid"] == [[10, 20, 30, 40], [90, 20, 110, 40]]


# ---- digests and the incremental build ----------------------------------------------------


def changed_cell(rows: pd.DataFrame, row: int, column: str) -> pd.DataFrame:
    """`rows` with one cell of `column` given another value of the same kind."""
    rows = rows.copy()
    value = rows[column].iloc[row]
    if column == "frames":
        new = [*value, 7]
    elif isinstance(value, bool | np.bool_):
        new = not value
    elif isinstance(value, Integral):
        new = int(value) + 1
    elif value is None:
        new = "R"
    else:
        new = f"{value}x"
    if column == "frames" or value is None:
        rows[column] = rows[column].astype(object)
    rows.iat[row, rows.columns.get_loc(column)] = new
    return rows


def spec_or_error(rois: pd.DataFrame, negatives: pd.DataFrame, exam: str) -> str | None:
    """The exam's specification, or the error its build raises."""
    try:
        return build_exam_specs(rois, negatives, 2).get(exam)
    except ValueError as error:  # SpecError, or a mirror that is neither x nor y
        return f"error: {error}"


def spec_or_digest_changes(rois, negatives, edited_rois, edited_negatives, exam):
    """Whether an edit changed the exam's specification (or made it fail), and whether it
    changed the exam's digest."""
    spec_changed = spec_or_error(rois, negatives, exam) != spec_or_error(
        edited_rois, edited_negatives, exam
    )
    digests = exam_digests(rois, negatives, 2), exam_digests(edited_rois, edited_negatives, 2)
    return spec_changed, digests[0].get(exam) != digests[1].get(exam)


@pytest.mark.parametrize("column", list(ROIS.columns))
def test_a_cell_that_changes_an_roi_spec_changes_its_exams_digest(column):
    edited = changed_cell(ROIS, 2, column)  # exam B's only row
    spec_changed, digest_changed = spec_or_digest_changes(ROIS, IMAGES, edited, IMAGES, str(ACC_B))
    assert digest_changed or not spec_changed
    assert exam_digests(edited, IMAGES, 2)[str(ACC_A)] == exam_digests(ROIS, IMAGES, 2)[str(ACC_A)]


@pytest.mark.parametrize("column", list(IMAGES.columns))
def test_a_cell_that_changes_a_negative_image_spec_changes_its_exams_digest(column):
    edited = changed_cell(IMAGES, 2, column)  # exam 42's only row
    spec_changed, digest_changed = spec_or_digest_changes(ROIS, IMAGES, ROIS, edited, "42")
    assert digest_changed or not spec_changed
    assert exam_digests(ROIS, edited, 2)[str(ACC_A)] == exam_digests(ROIS, IMAGES, 2)[str(ACC_A)]


def test_digests_ignore_row_order_but_not_the_number_of_negatives():
    shuffled = ROIS.sample(frac=1, random_state=1)
    assert exam_digests(shuffled, IMAGES, 2) == exam_digests(ROIS, IMAGES, 2)
    assert exam_digests(ROIS, IMAGES, 2)[str(ACC_B)] != exam_digests(ROIS, IMAGES, 3)[str(ACC_B)]
    # Without negatives the negative images are not read: they change nothing.
    assert exam_digests(ROIS, IMAGES.iloc[0:0], 0) == exam_digests(ROIS, IMAGES, 0)


def test_an_unchanged_build_reuses_every_exam_and_a_new_exam_is_the_only_one_built():
    first, built = update_exam_specs(ROIS, IMAGES, 2)
    assert built == 3 and first.specs == build_exam_specs(ROIS, IMAGES, 2)
    again, built = update_exam_specs(ROIS.iloc[::-1], IMAGES, 2, first)
    assert (again, built) == (first, 0)
    more = pd.concat([ROIS, pd.DataFrame([roi("n/1.dcm", 77, 0)])], ignore_index=True)
    after, built = update_exam_specs(more, IMAGES, 2, first)
    assert built == 1 and after.specs == build_exam_specs(more, IMAGES, 2)


paths = st.sampled_from([f"p/{n}.dcm" for n in range(6)])
exams = st.sampled_from([ACC_A, ACC_B, 42, 43])


@st.composite
def tables(draw):
    """Accepted ROIs and negative images; each image path in one exam, as the filter leaves it."""
    exam_of = {path: draw(exams) for path in sorted(set(draw(st.lists(paths, max_size=6))))}
    rois = []
    for path, acc in exam_of.items():
        for index in range(draw(st.integers(0, 2))):
            y, x = draw(st.integers(0, 50)), draw(st.integers(0, 40))
            flags = {"suspect_flip": draw(st.booleans()), "mirror": draw(st.sampled_from("xy"))}
            rois.append(roi(path, acc, index, (y, x, y + 10, x + 10), **flags))
    negatives = [image(path, acc) for path, acc in exam_of.items() if draw(st.booleans())]
    columns_of = {"rois": list(roi("p", 1, 0)), "negatives": list(image("p", 1))}
    return (
        pd.DataFrame(rois, columns=columns_of["rois"]),
        pd.DataFrame(negatives, columns=columns_of["negatives"]),
    )


@st.composite
def edits(draw, rois: pd.DataFrame, negatives: pd.DataFrame):
    """The tables after one edit: a cell changed, a row dropped or the rows reordered."""
    which = draw(st.sampled_from(["rois", "negatives"]))
    rows = rois if which == "rois" else negatives
    kind = draw(st.sampled_from(["cell", "drop", "reorder"]))
    if len(rows) == 0:
        return rois, negatives
    row = draw(st.integers(0, len(rows) - 1))
    if kind == "cell":
        rows = changed_cell(rows, row, draw(st.sampled_from(list(rows.columns))))
    elif kind == "drop":
        rows = rows.drop(rows.index[row])
    else:
        rows = rows.sample(frac=1, random_state=row)
    return (rows, negatives) if which == "rois" else (rois, rows)


@settings(max_examples=150, deadline=None)
@given(st.data(), st.integers(0, 2))
def test_an_updated_build_is_the_whole_build_of_the_new_tables(data, negatives_per_image):
    rois, negatives = data.draw(tables())
    last = update_exam_specs(rois, negatives, negatives_per_image)[0]
    new_rois, new_negatives = data.draw(edits(rois, negatives))
    try:
        expected = build_exam_specs(new_rois, new_negatives, negatives_per_image)
    except ValueError:  # the edit broke a specification's rules: the update says so too
        with pytest.raises(ValueError):
            update_exam_specs(new_rois, new_negatives, negatives_per_image, last)
        return
    updated, built = update_exam_specs(new_rois, new_negatives, negatives_per_image, last)
    assert updated.specs == expected
    rebuilt = {exam for exam, spec in expected.items() if last.specs.get(exam) != spec}
    assert built >= len(rebuilt)
