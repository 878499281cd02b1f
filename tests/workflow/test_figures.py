"""Summary figures, summary.json and the Snakemake report: pure parts, then a demo run."""

import json
import re
import struct
from pathlib import Path

import pandas as pd
import pytest
from matplotlib.figure import Figure
from matplotlib.image import imread

from embedpatch.report.figure_cache import FIGURE_SOURCES, figure_key, write_figures_cached
from embedpatch.report.figure_data import MISSING
from embedpatch.report.figures import PLOTS, write_figures
from embedpatch.report.run_tables import PIXEL_FIGURES, RunTables
from embedpatch.report.table_figures import (
    balance_figure,
    counts_figure,
    dbt_frames_figure,
    rejections_figure,
    roi_locations_figure,
    roi_sizes_figure,
    rois_per_image_figure,
)
from helpers.project import ROOT
from helpers.roi_tables import roi_rows
from helpers.snakemake_runner import run_snakemake

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


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
        balance_figure(pd.DataFrame(columns=["label", "anon_dicom_path", *filtered.columns])),
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
    # plot_funnel counts the funnel figure's numbers itself, from the same tables
    tables = {table: str(results / RUN_TABLES[table]) for table in FIGURE_SOURCES["funnel"]}
    assert RunTables(tables).funnel == funnel


RUN_TABLES = {
    "filter_summary": "metadata/filter_summary.json",
    "filtered": "metadata/filtered.parquet",
    "rois": "rois/rois.parquet",
    "rejected": "rois/rejected.parquet",
    "manifest": "manifest.parquet",
}


@pytest.mark.workflow
@pytest.mark.parametrize("name", sorted(FIGURE_SOURCES))
def test_a_cached_figure_is_drawn_from_the_tables_its_key_covers(demo_run, tmp_path, name):
    """The figure cache keys a figure on FIGURE_SOURCES: drawing it needs no other input."""
    results = demo_run / "results"
    inputs = {table: str(results / RUN_TABLES[table]) for table in FIGURE_SOURCES[name]}
    write_figures(RunTables(inputs), {name: str(tmp_path / f"{name}.png")})
    assert png_size(tmp_path / f"{name}.png")[0] > 0


@pytest.mark.workflow
def test_figures_of_pixels_are_copied_while_what_they_show_is_unchanged(
    demo_run, tmp_path, monkeypatch
):
    """A rerun that changed no sampled patch and no image shown copies the gallery and the
    overlays from the cache."""
    monkeypatch.chdir(demo_run)  # the tables' dicom_path are relative to the run's folder
    results = demo_run / "results"
    inputs = {table: str(results / RUN_TABLES[table]) for table in ("filtered", "rois", "manifest")}
    outputs = {name: str(tmp_path / f"{name}.png") for name in PIXEL_FIGURES}
    cache = tmp_path / "cache"
    write_figures_cached(inputs, outputs, cache)
    for name in PIXEL_FIGURES:
        assert (cache / f"{name}.key").read_text() == figure_key(name, RunTables(inputs))
        (cache / f"{name}.png").write_bytes(b"the cached figure")
    write_figures_cached(inputs, outputs, cache)
    assert {Path(path).read_bytes() for path in outputs.values()} == {b"the cached figure"}


@pytest.mark.workflow
def test_figures_without_dbt_rois_or_flips_say_so(demo_run, tmp_path):
    results = demo_run / "results"
    rois = pd.read_parquet(results / "rois/rois.parquet")
    flat = rois[(rois["FinalImageType"] != "3D") & ~rois["suspect_flip"]]
    flat.to_parquet(tmp_path / "rois.parquet")
    inputs = {"rois": str(tmp_path / "rois.parquet"), "manifest": str(results / "manifest.parquet")}
    outputs = {name: str(tmp_path / f"{name}.png") for name in ("overlay_dbt", "suspect_flips")}
    write_figures(RunTables(inputs), outputs)
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
    write_figures(RunTables(inputs), {"overlay_2d": str(tmp_path / "overlay_2d.png")})
    assert png_size(tmp_path / "overlay_2d.png")[0] > 0


@pytest.mark.workflow
def test_report_holds_every_figure(demo_run):
    report = demo_run / "report.html"
    result = run_snakemake(demo_run, "--report", str(report))
    assert result.returncode == 0, result.stderr[-4000:]
    html = report.read_text()
    for name in PLOTS:
        assert f"{name}.png" in html, name


def test_a_table_without_manufacturer_is_counted_as_missing(tmp_path):
    """Only the filter's own columns are required: the counts figure of a table without
    Manufacturer shows it as missing instead of failing the rule."""
    path = tmp_path / "filtered.parquet"
    pd.DataFrame(
        {
            "anon_dicom_path": ["a.dcm", "b.dcm"],
            "dicom_path": ["a.dcm", "b.dcm"],
            "FinalImageType": ["2D", "3D"],
            "ViewPosition": ["CC", "MLO"],
            "ImageLateralityFinal": ["L", "R"],
        }
    ).to_parquet(path)
    filtered = RunTables({"filtered": str(path)}).filtered
    assert filtered["Manufacturer"].isna().all()
    figure = counts_figure(filtered)
    assert figure.texts[0].get_text() == "Image rows kept by the filter: 2"
    manufacturer_axis = figure.axes[3]
    assert [label.get_text() for label in manufacturer_axis.get_yticklabels()] == [MISSING]


@pytest.mark.workflow
def test_flip_check_evaluation_is_a_target_of_its_own(demo_run, tmp_path):
    """The phantom evaluation does not depend on the cohort: not in the default run, made
    on request with the run's thresholds."""
    assert not (demo_run / "results/rois/flip_check_evaluation.json").exists()
    workdir = tmp_path / "evaluation"
    workdir.mkdir()
    result = run_snakemake(workdir, "evaluate_flip_check")
    assert result.returncode == 0, result.stderr[-4000:]
    scores = json.loads((workdir / "results/rois/flip_check_evaluation.json").read_text())
    assert scores["images"] == 300 and scores["transformed_boxes"] > 0
    assert scores["check_recall_off_breast"] > 0.5
    assert not (workdir / "results/patches").exists()
    assert (workdir / "results/logs/evaluate_flip_check.log").stat().st_size > 0
    width, height = png_size(workdir / "results/figures/flip_check_evaluation.png")
    assert width >= 300 and height >= 200
