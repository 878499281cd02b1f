"""Summary figures, summary.json and the Snakemake report: pure parts, then a demo run."""

import json
import re
import struct
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread

from embedpatch.dicom import ImageHeader
from embedpatch.figures import (
    PLOTS,
    RunTables,
    content_mask,
    context_window,
    counts_figure,
    dbt_frame_stats,
    dbt_frames_figure,
    gallery_rows,
    interleaved_sample,
    normalized_centres,
    patch_display,
    reason_counts,
    rejections_figure,
    roi_locations_figure,
    roi_sizes_figure,
    rois_per_image_figure,
    spread,
    tissue_bright,
    top_counts,
    warning_counts,
    write_figures,
)
from embedpatch.reasons import RoiReason
from embedpatch.summary import FUNNEL_STAGES, funnel_counts
from snakemake_runner import run_snakemake

ROOT = Path(__file__).resolve().parent.parent
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def roi_rows(*rows: dict) -> pd.DataFrame:
    """A rois.parquet-like table; every column has a default."""
    defaults = {
        "acc_anon": 1,
        "anon_dicom_path": "a.dcm",
        "dicom_path": "a.dcm",
        "FinalImageType": "2D",
        "ImageLateralityFinal": "L",
        "ViewPosition": "CC",
        "roi_index": 0,
        "ymin": 10,
        "xmin": 10,
        "ymax": 20,
        "xmax": 30,
        "frames": [],
        "rows": 100,
        "columns": 100,
        "n_frames": 1,
        "clipped": False,
        "near_duplicate_of": pd.NA,
        "suspect_flip": False,
        "flip_fixed": False,
        "box_tissue": 1.0,
        "mirror_tissue": 0.0,
    }
    return pd.DataFrame([defaults | row for row in rows], columns=list(defaults))


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


# ---- pure parts -----------------------------------------------------------------------------


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
        }
    )
    sample = interleaved_sample(table, 6, seed=1)
    assert set(sample["dtype"].iloc[:4]) == {"uint16", "int16", "int32", "uint8"}
    assert {"2D", "3D"} <= set(sample.loc[sample["dtype"] == "uint16", "FinalImageType"])
    without = interleaved_sample(table.drop(columns="dtype"), 6, seed=1)
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
        {},
    )
    assert warning_counts(rois).to_dict() == {
        "clipped": 1,
        "near_duplicate": 1,
        "suspect_flip": 1,
        "flip_fixed": 1,
    }


def test_interleaved_sample_is_seeded_capped_and_takes_turns():
    table = pd.DataFrame({"FinalImageType": ["2D"] * 20 + ["3D"] * 2, "n": range(22)})
    sample = interleaved_sample(table, 4, seed=3)
    assert sample.equals(interleaved_sample(table, 4, seed=3))
    assert len(sample) == 4
    assert sorted(sample["FinalImageType"].iloc[:2]) == ["2D", "3D"]
    assert len(interleaved_sample(table, 100)) == len(table)


def test_gallery_rows_bring_every_padding_of_each_sampled_roi():
    patch = {"anon_dicom_path": "a", "frame": -1, "FinalImageType": "2D"}
    rois = [
        patch | {"roi_index": roi, "padding": padding, "label": "roi"}
        for roi in range(5)
        for padding in ("tissue", "black")
    ]
    negatives = [patch | {"roi_index": -1, "padding": "tissue", "label": "negative"}] * 4
    manifest = pd.DataFrame(rois + negatives)
    chosen, negatives = gallery_rows(manifest, n_rois=3, n_negatives=2)
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


def test_table_figures_draw_empty_tables():
    rois = roi_rows().iloc[:0]
    filtered = pd.DataFrame(columns=["FinalImageType", "ViewPosition", "ImageLateralityFinal"])
    filtered["Manufacturer"] = []
    rejected = pd.DataFrame({"reason": [], "n_rois": [], "stage": []})
    figures = [
        rejections_figure(rejected, rois),
        rois_per_image_figure(rois),
        roi_sizes_figure(rois),
        dbt_frames_figure(rois),
        roi_locations_figure(rois),
        counts_figure(filtered),
    ]
    assert all(isinstance(figure, Figure) for figure in figures)


def test_every_figure_has_a_caption_and_a_rule():
    report_rules = (ROOT / "workflow/rules/report.smk").read_text()
    for name in PLOTS:
        assert (ROOT / f"workflow/report/{name}.rst").read_text().strip()
        assert re.search(rf'^\s+"{name}": "', report_rules, re.MULTILINE), name


# ---- a demo run -----------------------------------------------------------------------------


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's header, after checking its signature."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE and data[12:16] == b"IHDR", f"{path} is not a PNG"
    return struct.unpack(">II", data[16:24])


@pytest.mark.workflow
@pytest.mark.parametrize("name", sorted(PLOTS))
def test_every_figure_is_a_readable_png(demo_run, name):
    path = demo_run / f"results/figures/{name}.png"
    assert 5_000 < path.stat().st_size < 5_000_000
    width, height = png_size(path)
    assert 300 <= width <= 4000 and 200 <= height <= 4000
    pixels = imread(path)
    assert pixels.shape[:2] == (height, width)
    assert pixels.std() > 0.01  # not blank


@pytest.mark.workflow
def test_summary_counts_equal_the_tables(demo_run):
    results = demo_run / "results"
    summary = json.loads((results / "summary.json").read_text())
    funnel = summary["funnel"]
    manifest = pd.read_parquet(results / "manifest.parquet")
    rejected = pd.read_parquet(results / "rois/rejected.parquet")
    filtered = pd.read_parquet(results / "metadata/filtered.parquet", columns=["FinalImageType"])
    assert funnel["rows_kept"]["total"] == len(filtered) > 0
    assert funnel["rois_accepted"]["total"] == len(pd.read_parquet(results / "rois/rois.parquet"))
    assert funnel["rois_rejected"]["total"] == rejected["n_rois"].sum() > 0
    assert funnel["patches"]["total"] == len(manifest) > 0
    assert funnel["patches_roi"]["total"] == (manifest["label"] == "roi").sum()
    for stage, counts in funnel.items():
        if "by_image_type" in counts:
            assert sum(counts["by_image_type"].values()) == counts["total"], stage
    for key, path in [
        ("filter", "metadata/filter_summary.json"),
        ("rois", "rois/roi_summary.json"),
        ("patches", "patches_summary.json"),
    ]:
        assert summary[key] == json.loads((results / path).read_text())
    assert funnel["rows_in"]["total"] == summary["filter"]["rows_in"]
    assert funnel["rois_declared"]["total"] == summary["rois"]["rois_declared"]
    assert funnel["patches"]["total"] == summary["patches"]["patches"]


@pytest.mark.workflow
def test_figures_without_dbt_rois_or_flips_say_so(demo_run, tmp_path):
    results = demo_run / "results"
    rois = pd.read_parquet(results / "rois/rois.parquet")
    flat = rois[(rois["FinalImageType"] != "3D") & ~rois["suspect_flip"]]
    flat.to_parquet(tmp_path / "rois.parquet")
    inputs = {"rois": str(tmp_path / "rois.parquet"), "manifest": str(results / "manifest.parquet")}
    outputs = {name: str(tmp_path / f"{name}.png") for name in ("overlay_dbt", "suspect_flips")}
    write_figures(inputs, outputs)
    for path in outputs.values():
        assert png_size(Path(path))[0] > 0
    assert RunTables(inputs).results == results


@pytest.mark.workflow
def test_overlays_skip_images_extraction_refused(demo_run, tmp_path, monkeypatch):
    """The 2D image with the most ROIs, gone since validation (not in the manifest), is not
    drawn: the overlay shows the next one."""
    results = demo_run / "results"
    rois = pd.read_parquet(results / "rois/rois.parquet")
    counts = rois[rois["FinalImageType"] == "2D"].groupby("anon_dicom_path").size().sort_index()
    gone = counts.idxmax()
    rois.loc[rois["anon_dicom_path"] == gone, "dicom_path"] = str(tmp_path / "gone.dcm")
    rois.to_parquet(tmp_path / "rois.parquet")
    manifest = pd.read_parquet(results / "manifest.parquet")
    manifest[manifest["anon_dicom_path"] != gone].to_parquet(tmp_path / "manifest.parquet")
    monkeypatch.chdir(demo_run)  # the tables' dicom_path are relative to the run's folder
    inputs = {
        "rois": str(tmp_path / "rois.parquet"),
        "manifest": str(tmp_path / "manifest.parquet"),
    }
    write_figures(inputs, {"overlay_2d": str(tmp_path / "overlay_2d.png")})
    assert png_size(tmp_path / "overlay_2d.png")[0] > 0


@pytest.mark.workflow
def test_report_holds_every_figure(demo_run):
    report = demo_run / "report.html"
    result = run_snakemake(demo_run, "--report", str(report))
    assert result.returncode == 0, result.stderr[-4000:]
    html = report.read_text()
    for name in PLOTS:
        assert f"{name}.png" in html, name
