"""What the figures show, computed without drawing: figure_data on small tables (no matplotlib)."""

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from embedpatch.dicom import ImageHeader
from embedpatch.reasons import RoiReason
from embedpatch.report.figure_data import (
    DISPLAY_PIXELS,
    MISSING,
    content_mask,
    context_window,
    dbt_frame_stats,
    display_factor,
    extracted_rois,
    gallery_rows,
    interleaved_sample,
    label_counts,
    negative_sources,
    normalized_centres,
    overlay_2d_rois,
    overlay_dbt_roi,
    patch_display,
    reason_counts,
    roi_size_groups,
    rois_per_image,
    spread,
    suspect_flip_sample,
    tissue_bright,
    top_counts,
    warning_counts,
)
from embedpatch.report.summary import FUNNEL_STAGES, funnel_counts
from helpers.roi_tables import roi_rows


def header(
    photometric: str = "MONOCHROME2",
    rows: int = 8,
    columns: int = 8,
    bits: tuple[int, int] = (16, 12),  # allocated, stored
    signed: int = 0,
) -> ImageHeader:
    return ImageHeader(
        rows=rows,
        columns=columns,
        number_of_frames=1,
        sop_class_uid=None,
        transfer_syntax_uid="1.2.840.10008.1.2.1",
        photometric_interpretation=photometric,
        bits_allocated=bits[0],
        bits_stored=bits[1],
        pixel_representation=signed,
        samples_per_pixel=1,
        window_center=None,
        window_width=None,
    )


def test_normalized_centre_mirrors_right_images():
    rois = roi_rows(
        {"ImageLateralityFinal": "L", "xmin": 10, "xmax": 30, "ymin": 40, "ymax": 60},
        {"ImageLateralityFinal": "R", "xmin": 10, "xmax": 30, "ymin": 40, "ymax": 60},
        {"ImageLateralityFinal": "R", "xmin": 180, "xmax": 200, "columns": 200, "rows": 50},
    )
    centres = normalized_centres(rois)
    assert centres["x"].tolist() == pytest.approx([0.2, 0.8, 0.05])
    assert centres["y"].tolist() == pytest.approx([0.5, 0.5, 0.3])


def test_content_mask_keeps_the_image_part_and_for_black_padding_the_box():
    tissue = pd.Series(
        {"patch_size": 6, "patch_y0": -2, "patch_x0": 3, "padding": "tissue"}
        | {"ymin": 0, "xmin": 4, "ymax": 2, "xmax": 6}
    )
    mask = content_mask(tissue, rows=10, columns=7)
    assert mask.shape == (6, 6)
    assert not mask[:2].any() and mask[2:, :4].all() and not mask[:, 4:].any()
    black = tissue.copy()
    black["padding"] = "black"
    mask = content_mask(black, rows=10, columns=7)
    assert np.argwhere(mask).tolist() == [[2, 1], [2, 2], [3, 1], [3, 2]]


def test_monochrome1_is_inverted_and_padding_stays_black():
    stored = np.array([[4095, 0], [2000, 0]], dtype=np.uint16)
    bright = tissue_bright(stored, header("MONOCHROME1"))
    assert bright.tolist() == [[0, 4095], [2095, 4095]]
    assert tissue_bright(stored, header()) is stored
    content = np.array([[True, True], [True, False]])
    shown = patch_display(bright, content)
    assert shown[1, 1] == 0.0
    assert shown[0, 0] == 0.0 and shown[0, 1] == 1.0
    assert 0.0 < shown[1, 0] < 1.0


@pytest.mark.parametrize(
    ("stored", "bits", "signed", "expected"),
    [
        ([[4095, 0], [2000, 0]], (16, 12), 0, [[0, 4095], [2095, 4095]]),
        ([[2047, -2048], [-48, 0]], (16, 12), 1, [[-2048, 2047], [47, -1]]),
        ([[255, 0], [100, 0]], (8, 8), 0, [[0, 255], [155, 255]]),
    ],
    ids=["uint16", "int16", "uint8"],
)
@pytest.mark.parametrize("widened", [False, True], ids=["as stored", "in an int32 exam"])
def test_monochrome1_of_every_pixel_type_is_inverted_in_its_own_range(
    stored, bits, signed, expected, widened
):
    """A patch of an exam mixing pixel types holds its image's values in a wider dtype
    (int32): it is inverted within the image's own range all the same."""
    kind = np.dtype(f"{'i' if signed else 'u'}{bits[0] // 8}")
    pixels = np.array(stored, dtype=np.int32 if widened else kind)
    bright = tissue_bright(pixels, header("MONOCHROME1", bits=bits, signed=signed))
    assert bright.tolist() == expected and bright.dtype == kind


def test_gallery_samples_take_turns_between_dtypes_then_image_types():
    table = pd.DataFrame(
        {
            "FinalImageType": ["2D"] * 30 + ["3D"] * 10 + ["2D", "cview", "2D"],
            "dtype": ["uint16"] * 40 + ["int16", "int32", "uint8"],
            "n": range(43),
        }
    )
    sample = interleaved_sample(table, 6, ["n"], seed=1)
    assert set(sample["dtype"].iloc[:4]) == {"uint16", "int16", "int32", "uint8"}
    assert {"2D", "3D"} <= set(sample.loc[sample["dtype"] == "uint16", "FinalImageType"])
    without = interleaved_sample(table.drop(columns="dtype"), 6, ["n"], seed=1)
    assert set(without["FinalImageType"].iloc[:3]) == {"2D", "3D", "cview"}


def test_reason_counts_count_declared_rois_per_stage():
    rejected = pd.DataFrame(
        {
            "reason": ["count_mismatch", "image_unreadable", "image_unreadable", "new_code"],
            "n_rois": [3, 1, 2, 1],
            "stage": ["validate", "validate", "extract", "validate"],
        }
    )
    counts = reason_counts(rejected)
    assert list(counts.index) == [str(reason) for reason in RoiReason] + ["new_code"]
    assert list(counts.columns) == ["validate", "extract"]
    assert counts.loc["count_mismatch"].tolist() == [3, 0]
    assert counts.loc["image_unreadable"].tolist() == [1, 2]
    assert counts.to_numpy().sum() == rejected["n_rois"].sum()


def test_warning_counts():
    rois = roi_rows(
        {"clipped": True, "near_duplicate_of": 0},
        {"suspect_flip": True, "flip_fixed": True},
        {"axes_swapped": True, "frames_on_2d": True},
    )
    assert warning_counts(rois).to_dict() == {
        "clipped": 1,
        "near_duplicate": 1,
        "suspect_flip": 1,
        "flip_fixed": 1,
        "suspect_axes_swapped": 1,
        "axes_fixed": 0,
        "frames_on_2d": 1,
    }


def test_interleaved_sample_is_seeded_capped_and_takes_turns():
    table = pd.DataFrame({"FinalImageType": ["2D"] * 20 + ["3D"] * 2, "n": range(22)})
    sample = interleaved_sample(table, 4, ["n"], seed=3)
    assert sample.equals(interleaved_sample(table, 4, ["n"], seed=3))
    assert not sample.equals(interleaved_sample(table, 4, ["n"], seed=4))
    assert len(sample) == 4
    assert sorted(sample["FinalImageType"].iloc[:2]) == ["2D", "3D"]
    assert len(interleaved_sample(table, 100, ["n"])) == len(table)


patch_tables = st.lists(
    st.tuples(st.sampled_from(["2D", "3D", "cview"]), st.sampled_from(["uint16", "int16"])),
    min_size=1,
    max_size=40,
).map(lambda rows: pd.DataFrame(rows, columns=["FinalImageType", "dtype"]).assign(
    n=lambda table: range(len(table))))  # fmt: skip


@given(patch_tables, st.integers(1, 8), st.randoms(use_true_random=False))
def test_a_sample_depends_on_its_rows_not_on_their_order(table, n, random):
    shuffled = table.iloc[random.sample(range(len(table)), len(table))]
    assert interleaved_sample(shuffled, n, ["n"])["n"].tolist() == (
        interleaved_sample(table, n, ["n"])["n"].tolist()
    )


@given(patch_tables, st.integers(1, 8), st.integers(1, 10))
def test_rows_added_outside_a_sample_leave_it_as_it_was(table, n, added):
    """New rows (new exams) change the sample only by entering it."""
    old = table.iloc[: max(len(table) - added, 1)]
    new_rows = set(table["n"]) - set(old["n"])
    grown = interleaved_sample(table, n, ["n"])["n"].tolist()
    if not new_rows & set(grown):
        assert grown == interleaved_sample(old, n, ["n"])["n"].tolist()


def test_gallery_rows_bring_every_padding_of_each_sampled_roi():
    patch = {
        "anon_dicom_path": "a",
        "frame": -1,
        "FinalImageType": "2D",
        "patch_y0": 0,
        "patch_x0": 0,
    }
    rois = [
        patch | {"roi_index": roi, "padding": padding, "label": "roi", "index": 2 * roi + i}
        for roi in range(5)
        for i, padding in enumerate(("tissue", "black"))
    ]
    negatives = [
        patch | {"roi_index": -1, "padding": "tissue", "label": "negative", "index": 10}
    ] * 4
    manifest = pd.DataFrame(rois + negatives)
    chosen, negatives = gallery_rows(manifest, n_rois=3, n_negatives=2)
    assert gallery_rows(manifest.iloc[::-1], n_rois=3, n_negatives=2)[0].equals(chosen)
    assert len(chosen) == 6 and len(negatives) == 2
    assert (chosen.groupby("roi_index")["padding"].apply(list) == [["tissue", "black"]] * 3).all()
    assert set(chosen.index) <= set(manifest.index)


def test_dbt_frame_stats_span_gaps_and_depth():
    rois = roi_rows(
        {"frames": [3, 4, 5], "n_frames": 11},
        {"frames": [0, 4], "n_frames": 11},
    )
    stats = dbt_frame_stats(rois)
    assert stats["span"].tolist() == [3, 5]
    assert stats["listed"].tolist() == [3, 2]
    assert stats["depth"].tolist() == pytest.approx([0.4, 0.2])


def test_spread_and_context_window():
    assert spread([1, 2, 3], 6) == [1, 2, 3]
    assert spread(list(range(10)), 3) == [0, 4, 9]
    # three times the box's longer side, moved inside the image
    assert context_window((0, 90, 10, 100), rows=200, columns=100) == (0, 70, 30, 100)
    # at least a quarter of the image's shorter side, centred on the box
    assert context_window((100, 50, 102, 52), rows=200, columns=100) == (88, 38, 113, 63)


def test_top_counts_groups_the_tail():
    values = pd.Series(["a"] * 5 + ["b"] * 3 + ["c", "d", None])
    counts = top_counts(values, top=3)
    assert counts.to_dict() == {"a": 5, "b": 3, "other (3 values)": 3}
    assert top_counts(pd.Series(["a", None])).to_dict() == {"a": 1, "(missing)": 1}


def test_funnel_counts_from_the_tables():
    filtered = pd.DataFrame({"FinalImageType": ["2D", "2D", "3D", "cview"]})
    rois = roi_rows({}, {"FinalImageType": "3D"})
    rejected = pd.DataFrame(
        {
            "FinalImageType": ["2D", "3D"],
            "n_rois": [2, 1],
            "stage": ["validate", "extract"],
        }
    )
    manifest = pd.DataFrame(
        {
            "anon_dicom_path": ["a", "a", "b", "b", "c"],
            "FinalImageType": ["2D", "2D", "3D", "3D", "2D"],
            "roi_index": [0, 0, 0, 0, -1],
            "label": ["roi", "roi", "roi", "roi", "negative"],
        }
    )
    funnel = funnel_counts(7, filtered, rois, rejected, manifest)
    assert list(funnel) == list(FUNNEL_STAGES)
    totals = {stage: counts["total"] for stage, counts in funnel.items()}
    assert totals == {
        "rows_in": 7,
        "rows_kept": 4,
        "rois_declared": 4,  # 2 accepted + 2 refused by validation
        "rois_accepted": 2,
        "rois_rejected": 3,
        "rois_with_patches": 2,
        "patches": 5,
        "patches_roi": 4,
        "patches_negative": 1,
    }
    assert funnel["rois_declared"]["by_image_type"] == {"2D": 3, "cview": 0, "3D": 1}


def test_figure_data_does_not_import_matplotlib():
    code = "import sys, embedpatch.report.figure_data; assert 'matplotlib' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_the_figure_rules_entry_point_imports_no_dicom_reader():
    """Table figures draw without pydicom: image figures are imported only when drawn."""
    code = "import sys, embedpatch.report.figures; assert 'pydicom' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_rois_per_image_counts_images_by_their_rois_per_type():
    rois = roi_rows(
        {"anon_dicom_path": "a", "roi_index": 0},
        {"anon_dicom_path": "a", "roi_index": 1},
        {"anon_dicom_path": "b"},
        {"anon_dicom_path": "c", "FinalImageType": "3D"},
    )
    table = rois_per_image(rois)
    assert list(table.columns) == ["2D", "3D"]
    assert table.to_dict() == {"2D": {1: 1, 2: 1}, "3D": {1: 1, 2: 0}}
    assert rois_per_image(rois.iloc[:0]).empty


def test_roi_size_groups_per_image_type():
    rois = roi_rows({"ymax": 15}, {"FinalImageType": "cview", "ymin": 0, "ymax": 40})
    heights = roi_size_groups(rois, "ymin", "ymax")
    assert {kind: values.tolist() for kind, values in heights.items()} == {
        "2D": [5],
        "cview": [40],
    }


def test_overlays_choose_the_busiest_2d_image_and_the_longest_dbt_roi():
    rois = roi_rows(
        {"anon_dicom_path": "b", "roi_index": 1},
        {"anon_dicom_path": "b", "roi_index": 0},
        {"anon_dicom_path": "a"},
        {"anon_dicom_path": "d", "FinalImageType": "3D", "frames": [1, 2], "n_frames": 20},
        {"anon_dicom_path": "e", "FinalImageType": "3D", "frames": list(range(9)), "n_frames": 20},
    )
    chosen = overlay_2d_rois(rois)
    assert chosen["anon_dicom_path"].tolist() == ["b", "b"]
    assert chosen["roi_index"].tolist() == [0, 1]
    roi, frames = overlay_dbt_roi(rois)
    assert roi["anon_dicom_path"] == "e" and frames == [0, 2, 3, 5, 6, 8]
    assert overlay_2d_rois(rois.iloc[3:]).empty and overlay_dbt_roi(rois.iloc[:3]) is None


def test_only_images_extraction_read_are_drawn_and_flips_are_sampled():
    rois = roi_rows(
        {"anon_dicom_path": "a", "suspect_flip": True},
        {"anon_dicom_path": "b", "suspect_flip": True},
        {"anon_dicom_path": "c"},
    )
    read = extracted_rois(rois, pd.DataFrame({"anon_dicom_path": ["a", "c"]}))
    assert read["anon_dicom_path"].tolist() == ["a", "c"]
    shown, total = suspect_flip_sample(rois)
    assert total == 2 and len(shown) == 2
    assert shown.equals(suspect_flip_sample(rois)[0])


def test_the_balance_counts_patches_by_label_and_the_images_negatives_came_from():
    manifest = pd.DataFrame(
        {
            "anon_dicom_path": ["a", "a", "a", "b", "b", "c"],
            "label": ["roi", "roi", "negative", "negative", "negative", "roi"],
            "ViewPosition": ["CC", "CC", "CC", "MLO", "MLO", None],
        }
    )
    counts = label_counts(manifest, "ViewPosition")
    assert counts.to_dict("index") == {
        "CC": {"roi": 2, "negative": 1},
        "MLO": {"roi": 0, "negative": 2},
        MISSING: {"roi": 1, "negative": 0},
    }
    assert negative_sources(manifest) == {"with ROIs": 1, "without ROIs": 1}


@given(st.integers(1, 100_000), st.integers(1, 100_000))
def test_the_display_factor_is_the_smallest_power_of_two_that_fits(rows, columns):
    factor = display_factor(rows, columns)
    assert factor & (factor - 1) == 0  # a power of two
    assert max(rows, columns) <= factor * DISPLAY_PIXELS
    assert factor == 1 or max(rows, columns) > factor // 2 * DISPLAY_PIXELS


def test_a_full_size_mammogram_is_shown_at_a_quarter():
    assert display_factor(3328, 2560) == 4
    assert display_factor(2457, 1890) == 4
    assert display_factor(64, 64) == 1
