"""Figures drawn again only when what they show changed.

The figure rules rerun whenever a table before them was rewritten: after new exams
arrived, or `snakemake -R extract_patches` that changed nothing. Each figure is kept in
the cache folder under a key: the SHA-256 of the embedpatch source code, the plotting
libraries' versions, and what the figure shows.
- A figure of tables (FIGURE_SOURCES): the bytes of the tables it reads.
- A figure of pixels (run_tables.PIXEL_FIGURES): its rows and numbers
  (RunTables.shown: the seeded sample of patches with their shards' digests, the
  image chosen with its boxes) and the identity of every image it reads
  (embedpatch.io.identity). Its samples keep their rows when new exams arrive, so the
  gallery and the overlays are drawn again only when a new exam enters them, a shard or
  an image changed, or the code did.
When the key is unchanged the cached PNG is copied to the output without importing
matplotlib; otherwise the figure is drawn (embedpatch.report.figures) and cached. A
figure of pixels whose image has no identity (missing, or the store failed) is drawn.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path

from embedpatch.io.atomic import atomic_output
from embedpatch.io.identity import image_identity
from embedpatch.provenance import code_digest
from embedpatch.report.run_tables import FUNNEL_TABLES, PIXEL_FIGURES, RunTables

log = logging.getLogger(__name__)

FIGURE_SOURCES: dict[str, tuple[str, ...]] = {
    "funnel": FUNNEL_TABLES,
    "rejections": ("rejected", "rois"),
    "counts": ("filtered",),
    "rois_per_image": ("rois",),
    "roi_sizes": ("rois",),
    "dbt_frames": ("rois",),
    "roi_locations": ("rois",),
    "balance": ("manifest",),
}
"""Figure of tables -> the inputs (RunTables names) it reads."""

LIBRARIES = ("matplotlib", "numpy", "pandas", "pyarrow")
"""The plotting libraries whose versions are part of every key."""


def _shown_digest(name: str, run: RunTables) -> bytes | None:
    """What figure of pixels `name` shows and the identities of its images; None when an
    image has no identity."""
    shown, images = run.shown(name)
    identities = [image_identity(image) for image in images]
    if None in identities:
        return None
    pairs = zip(images, identities, strict=True)
    text = "\0".join([shown, *(f"{image}={identity}" for image, identity in pairs)])
    return hashlib.sha256(text.encode()).digest()


def figure_key(name: str, run: RunTables) -> str | None:
    """The cache key of figure `name` of `run`; None for a figure that is not cached (one
    of its tables is not given, or an image it reads has no identity)."""
    digest = hashlib.sha256(code_digest(LIBRARIES) + name.encode() + b"\0")
    if name in PIXEL_FIGURES:
        shown = _shown_digest(name, run)
        if shown is None:
            return None
        digest.update(shown)
        return digest.hexdigest()
    sources = FIGURE_SOURCES.get(name)
    if sources is None or any(source not in run.inputs for source in sources):
        return None
    for source in sources:
        table = hashlib.sha256(Path(run.inputs[source]).read_bytes()).digest()
        digest.update(source.encode() + b"\0" + table)
    return digest.hexdigest()


class FigureCache:
    """One cached PNG per figure in `folder` (`<name>.png`), with the key it was drawn
    under (`<name>.key`, written after the PNG: a key names a complete PNG)."""

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)

    def restore(self, name: str, key: str | None, path: str | Path) -> bool:
        """Copy the cached figure to `path` if it was drawn under `key`; whether it was."""
        png, key_file = self.folder / f"{name}.png", self.folder / f"{name}.key"
        try:
            if key is None or key_file.read_text() != key:
                return False
            with atomic_output(path) as temporary:
                shutil.copyfile(png, temporary)
        except OSError:
            return False
        return True

    def store(self, name: str, key: str | None, path: str | Path) -> None:
        """Keep the figure just written at `path` under `key` (nothing when None)."""
        if key is None:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / f"{name}.key").unlink(missing_ok=True)
        with atomic_output(self.folder / f"{name}.png") as temporary:
            shutil.copyfile(path, temporary)
        with atomic_output(self.folder / f"{name}.key") as temporary:
            temporary.write_text(key)


def write_figures_cached(
    inputs: Mapping[str, str], outputs: Mapping[str, str], cache_dir: str | Path
) -> None:
    """Each output (figure name -> PNG path) copied from the cache when unchanged, the
    others drawn from the run's tables (`inputs`: RunTables names -> paths) and cached."""
    figure_cache = FigureCache(cache_dir)
    run = RunTables(inputs)
    keys = {name: figure_key(name, run) for name in outputs}
    to_draw = {}
    for name, path in outputs.items():
        if figure_cache.restore(name, keys[name], path):
            log.info("wrote %s (unchanged: copied from %s)", path, figure_cache.folder)
        else:
            to_draw[name] = path
    if not to_draw:
        return
    from embedpatch.report.figures import write_figures  # matplotlib: only to draw

    write_figures(run, to_draw)
    for name, path in to_draw.items():
        figure_cache.store(name, keys[name], path)
