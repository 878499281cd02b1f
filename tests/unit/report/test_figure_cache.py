"""The figure cache: a figure of unchanged tables is copied, a changed one drawn again."""

from pathlib import Path

from embedpatch.report.figure_cache import (
    FIGURE_SOURCES,
    FigureCache,
    figure_key,
    write_figures_cached,
)
from embedpatch.report.figures import PLOTS
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
    assert (cache / "roi_sizes.key").read_text() == figure_key("roi_sizes", changed)


def test_the_key_follows_the_figure_and_its_tables(tmp_path):
    inputs = rois_table(tmp_path / "rois.parquet", 2)
    assert figure_key("roi_sizes", inputs) == figure_key("roi_sizes", dict(inputs))
    assert figure_key("roi_sizes", inputs) != figure_key("rois_per_image", inputs)
    other = rois_table(tmp_path / "other.parquet", 3)
    assert figure_key("roi_sizes", inputs) != figure_key("roi_sizes", other)


def test_pixel_figures_and_figures_missing_a_table_are_never_cached(tmp_path):
    inputs = rois_table(tmp_path / "rois.parquet", 1)
    for name in ("patch_gallery", "overlay_2d", "overlay_dbt", "suspect_flips"):
        assert name in PLOTS and figure_key(name, inputs) is None
    assert figure_key("rejections", inputs) is None  # needs `rejected` too
    FigureCache(tmp_path / "cache").store("rejections", None, tmp_path / "rois.parquet")
    assert not (tmp_path / "cache").exists()


def test_a_cache_entry_without_its_key_or_png_is_drawn_again(tmp_path):
    inputs, cache = rois_table(tmp_path / "rois.parquet", 2), tmp_path / "cache"
    write_figures_cached(inputs, {"dbt_frames": str(tmp_path / "a.png")}, cache)
    (cache / "dbt_frames.png").unlink()
    assert not FigureCache(cache).restore("dbt_frames", figure_key("dbt_frames", inputs), "b.png")
    write_figures_cached(inputs, {"dbt_frames": str(tmp_path / "b.png")}, cache)
    assert (tmp_path / "b.png").read_bytes().startswith(PNG_SIGNATURE)


def test_every_cached_figure_is_one_the_rules_draw():
    assert set(FIGURE_SOURCES) <= set(PLOTS)
