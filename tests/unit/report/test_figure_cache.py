"""The figure cache: a figure of unchanged tables, or of pixels whose sample, shards and
images are unchanged, is copied; a changed one is drawn again."""

import os
from pathlib import Path

import pandas as pd

from embedpatch.report.figure_cache import (
    FIGURE_SOURCES,
    FigureCache,
    figure_key,
    write_figures_cached,
)
from embedpatch.report.figures import PLOTS
from embedpatch.report.run_tables import (
    FILTERED_COLUMNS,
    MANIFEST_COLUMNS,
    PIXEL_FIGURES,
    RunTables,
)
from helpers.roi_tables import roi_rows

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def rois_table(path: Path, n_rois: int) -> dict[str, str]:
    rois = roi_rows(*({"roi_index": i, "ymax": 20 + i} for i in range(n_rois)))
    rois.insert(0, "empi_anon", 7)  # every column of rois.parquet
    rois.to_parquet(path)
    return {"rois": str(path)}


def test_unchanged_tables_give_the_cached_figure_and_changed_ones_a_new_drawing(tmp_path):
    inputs, cache = rois_table(tmp_path / "rois.parquet", 3), tmp_path / "cache"
    first = tmp_path / "first.png"
    write_figures_cached(inputs, {"roi_sizes": str(first)}, cache)
    assert first.read_bytes().startswith(PNG_SIGNATURE)
    assert (cache / "roi_sizes.png").read_bytes() == first.read_bytes()

    (cache / "roi_sizes.png").write_bytes(b"the cached figure")  # tells a copy from a drawing
    again = tmp_path / "again.png"
    write_figures_cached(inputs, {"roi_sizes": str(again)}, cache)
    assert again.read_bytes() == b"the cached figure"

    changed = rois_table(tmp_path / "rois.parquet", 4)
    redrawn = tmp_path / "redrawn.png"
    write_figures_cached(changed, {"roi_sizes": str(redrawn)}, cache)
    assert redrawn.read_bytes().startswith(PNG_SIGNATURE)
    assert (cache / "roi_sizes.key").read_text() == figure_key("roi_sizes", RunTables(changed))


def key(name: str, inputs: dict[str, str]) -> str | None:
    return figure_key(name, RunTables(inputs))


def test_the_key_follows_the_figure_and_its_tables(tmp_path):
    inputs = rois_table(tmp_path / "rois.parquet", 2)
    assert key("roi_sizes", inputs) == key("roi_sizes", dict(inputs))
    assert key("roi_sizes", inputs) != key("rois_per_image", inputs)
    other = rois_table(tmp_path / "other.parquet", 3)
    assert key("roi_sizes", inputs) != key("roi_sizes", other)


def test_figures_missing_a_table_are_never_cached(tmp_path):
    inputs = rois_table(tmp_path / "rois.parquet", 1)
    assert key("rejections", inputs) is None  # needs `rejected` too
    FigureCache(tmp_path / "cache").store("rejections", None, tmp_path / "rois.parquet")
    assert not (tmp_path / "cache").exists()


def test_a_cache_entry_without_its_key_or_png_is_drawn_again(tmp_path):
    inputs, cache = rois_table(tmp_path / "rois.parquet", 2), tmp_path / "cache"
    write_figures_cached(inputs, {"dbt_frames": str(tmp_path / "a.png")}, cache)
    (cache / "dbt_frames.png").unlink()
    assert not FigureCache(cache).restore("dbt_frames", key("dbt_frames", inputs), "b.png")
    write_figures_cached(inputs, {"dbt_frames": str(tmp_path / "b.png")}, cache)
    assert (tmp_path / "b.png").read_bytes().startswith(PNG_SIGNATURE)


def test_every_figure_the_rules_draw_has_a_key():
    assert set(FIGURE_SOURCES) | set(PIXEL_FIGURES) == set(PLOTS)
    assert not set(FIGURE_SOURCES) & set(PIXEL_FIGURES)


# ---- figures of pixels: keyed on what they show -------------------------------------------


def patch_rows(exams: range, images: Path) -> pd.DataFrame:
    """Manifest rows: per exam, one image (a file in `images`) with one ROI patch per padding."""
    rows = []
    for exam in exams:
        image = images / f"{exam}.dcm"
        image.write_bytes(b"an image")
        for padding in ("tissue", "black"):
            rows.append({
                "shard": f"patches/{exam}.h5", "index": len(rows) % 2, "acc_anon": exam,
                "anon_dicom_path": f"anon/{exam}.dcm", "FinalImageType": "2D", "roi_index": 0,
                "frame": -1, "padding": padding, "label": "roi", "dtype": "uint16",
                "patches_sha256": f"digest of {exam}", "patch_size": 32,
            })  # fmt: skip
    return pd.DataFrame(rows)


def run_tables(folder: Path, manifest: pd.DataFrame, images: Path) -> RunTables:
    """Manifest and filtered table of `manifest`'s images (all other columns defaulted)."""
    manifest = manifest.reindex(columns=MANIFEST_COLUMNS).fillna(0)
    manifest.to_parquet(folder / "manifest.parquet", index=False)  # as collect_patches writes it
    paths = manifest["anon_dicom_path"].drop_duplicates()
    filtered = pd.DataFrame({"anon_dicom_path": paths, "dicom_path": [
        str(images / Path(path).name) for path in paths]})  # fmt: skip
    filtered.reindex(columns=FILTERED_COLUMNS).to_parquet(folder / "filtered.parquet")
    return RunTables({
        "manifest": str(folder / "manifest.parquet"),
        "filtered": str(folder / "filtered.parquet"),
    })  # fmt: skip


def test_new_exams_outside_the_gallery_keep_its_key(tmp_path):
    """The gallery's sample keeps its rows when exams arrive: 10 new exams of 500 usually
    stay out of its 6 ROIs (here: seed 0), and then its key is unchanged."""
    images = tmp_path / "images"
    images.mkdir()
    manifest = patch_rows(range(500), images)
    before = run_tables(tmp_path, manifest, images)
    key_before, (chosen, _) = figure_key("patch_gallery", before), before.gallery
    grown = pd.concat([manifest, patch_rows(range(500, 510), images)], ignore_index=True)
    after = run_tables(tmp_path, grown.sample(frac=1.0, random_state=1), images)
    assert set(after.gallery[0]["acc_anon"]) == set(chosen["acc_anon"])
    assert figure_key("patch_gallery", after) == key_before is not None


def test_the_gallery_key_follows_its_shards_and_images(tmp_path):
    images = tmp_path / "images"
    images.mkdir()
    manifest = patch_rows(range(20), images)
    original = figure_key("patch_gallery", run_tables(tmp_path, manifest, images))
    shown = run_tables(tmp_path, manifest, images).gallery[0]["acc_anon"].iloc[0]

    rewritten = manifest.copy()
    rewritten.loc[rewritten["acc_anon"] == shown, "patches_sha256"] = "other patches"
    assert figure_key("patch_gallery", run_tables(tmp_path, rewritten, images)) != original

    image = images / f"{shown}.dcm"
    os.utime(image, ns=(image.stat().st_atime_ns, image.stat().st_mtime_ns + 1))
    touched = figure_key("patch_gallery", run_tables(tmp_path, manifest, images))
    assert touched not in (original, None)

    image.unlink()  # an image without identity: drawn (and failing there), never cached
    assert figure_key("patch_gallery", run_tables(tmp_path, manifest, images)) is None


def test_the_overlay_key_follows_the_chosen_image_and_its_boxes(tmp_path):
    image = tmp_path / "b.dcm"
    image.write_bytes(b"an image")
    rois = roi_rows(*({"anon_dicom_path": "b", "dicom_path": str(image), "roi_index": i}
                      for i in range(2)))  # fmt: skip
    rois.insert(0, "empi_anon", 7)
    rois.to_parquet(tmp_path / "rois.parquet")
    manifest = pd.DataFrame({"anon_dicom_path": ["b"]}).reindex(columns=MANIFEST_COLUMNS)
    manifest.to_parquet(tmp_path / "manifest.parquet")
    inputs = {
        "rois": str(tmp_path / "rois.parquet"),
        "manifest": str(tmp_path / "manifest.parquet"),
    }
    original = key("overlay_2d", inputs)
    assert original is not None and original == key("overlay_2d", inputs)
    rois.loc[1, "ymax"] += 1
    rois.to_parquet(tmp_path / "rois.parquet")
    assert key("overlay_2d", inputs) not in (original, None)
