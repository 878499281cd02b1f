"""Figures drawn again only when what they show changed.

The figure rules rerun whenever a table before them was rewritten, e.g. after
`snakemake -R extract_patches` that changed nothing. A figure drawn from tables alone
(FIGURE_SOURCES) is kept in the cache folder under a key: the SHA-256 of the bytes of
the tables it reads, of the embedpatch source code, and of the plotting libraries'
versions. When the key is unchanged the cached PNG is copied to the output, without
importing matplotlib or reading a table; otherwise the figure is drawn
(embedpatch.report.figures) and cached. Figures of pixels (patches from the shards,
images) are always drawn: their tables do not identify the pixels they show.
"""

from __future__ import annotations

import hashlib
import logging
import shutil
from collections.abc import Mapping
from functools import cache
from importlib.metadata import version
from pathlib import Path

from embedpatch.io.atomic import atomic_output

log = logging.getLogger(__name__)

FIGURE_SOURCES: dict[str, tuple[str, ...]] = {
    "funnel": ("summary",),
    "rejections": ("rejected", "rois"),
    "counts": ("filtered",),
    "rois_per_image": ("rois",),
    "roi_sizes": ("rois",),
    "dbt_frames": ("rois",),
    "roi_locations": ("rois",),
    "balance": ("manifest",),
}
"""Figure drawn from tables alone -> the inputs (RunTables names) it reads."""

LIBRARIES = ("matplotlib", "numpy", "pandas", "pyarrow")
_PACKAGE = Path(__file__).resolve().parent.parent


@cache
def _code_digest() -> bytes:
    """SHA-256 of every source file of embedpatch and of the plotting libraries' versions."""
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(_PACKAGE).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    for library in LIBRARIES:
        digest.update(f"{library}={version(library)}\0".encode())
    return digest.digest()


def figure_key(name: str, inputs: Mapping[str, str]) -> str | None:
    """The cache key of figure `name` drawn from `inputs` (name -> path); None for a figure
    that is never cached (it shows pixels, or one of its tables is not given)."""
    sources = FIGURE_SOURCES.get(name)
    if sources is None or any(source not in inputs for source in sources):
        return None
    digest = hashlib.sha256(_code_digest() + name.encode() + b"\0")
    for source in sources:
        table = hashlib.sha256(Path(inputs[source]).read_bytes()).digest()
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
    others drawn from the run's tables (`inputs`, as for figures.write_figures) and cached."""
    figure_cache = FigureCache(cache_dir)
    keys = {name: figure_key(name, inputs) for name in outputs}
    to_draw = {}
    for name, path in outputs.items():
        if figure_cache.restore(name, keys[name], path):
            log.info("wrote %s (unchanged: copied from %s)", path, figure_cache.folder)
        else:
            to_draw[name] = path
    if not to_draw:
        return
    from embedpatch.report.figures import write_figures  # matplotlib: only to draw

    write_figures(inputs, to_draw)
    for name, path in to_draw.items():
        figure_cache.store(name, keys[name], path)
