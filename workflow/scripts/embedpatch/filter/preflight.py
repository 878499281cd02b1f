"""Before any job: do the table's image paths lead to images? (a wrong `path_rewrite` or
`dicom_root` would otherwise cost a whole run that writes nothing).

A seeded sample of the table's `anon_dicom_path` values (plus its first row) goes through
`path_rewrite` and `dicom_root` exactly as stage 1 maps them (`paths.rewrite_paths`);
each result must be below the root and name an existing file, or object when the root
is an object store. None found stops the run (`PathCheckError`, saying what a table
path became, which prefixes were tried, the table's most common prefix and, when an
image is found under the root by dropping leading folders, the rewrite that would
work); some not found gives a warning with the share and examples. Only the
`anon_dicom_path` column is read.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from embedpatch.io import object_store
from embedpatch.io.errors import ImageMissing
from embedpatch.io.paths import inside_root, rewrite_paths, root_prefix
from embedpatch.io.tables import (
    TableError,
    column_names,
    is_parquet,
    read_csv_head,
    read_table,
)

PATH_COLUMN = "anon_dicom_path"
SAMPLE_SEED = 0
COMMON_SHARE = 0.9
"""The most common prefix reported is the deepest folder at least this share of the
sampled paths start with."""
EXAMPLES = 3
SUGGESTION_TRIES = 5
"""Sampled paths tried for a suggested rewrite when none is found."""
REMOTE_CSV_BYTES = 16 << 20
"""Of a CSV table in an object store, the sample is drawn from the rows of its first
16 MiB (about 15,000 of EMBED's rows; one GET)."""

FOUND, OUTSIDE, MISSING = "found", "outside dicom_root", "no such file"


class PathCheckError(RuntimeError):
    """No sampled image path of the table leads to an image: stops the run."""


@dataclass(frozen=True)
class Probe:
    """One sampled table path, what it became and what is there."""

    table_path: str
    local_path: str
    outcome: str  # FOUND, OUTSIDE, MISSING, or the store's error in words


@dataclass(frozen=True)
class PathCheck:
    """The sample's probes, and the table's most common prefix with its share."""

    probes: list[Probe]
    rows: int
    whole_table: bool  # False: the rows sampled from are the table's first `rows`
    common_prefix: tuple[str, float]
    suggestion: tuple[str, str, str] | None
    """(from, to, the image found) of a rewrite that would work, when none was found."""

    @property
    def found(self) -> int:
        """Sampled paths that name an image."""
        return sum(probe.outcome == FOUND for probe in self.probes)


def sample_paths(paths: pa.Array, size: int, seed: int = SAMPLE_SEED) -> list[str]:
    """The first non-empty path and a seeded sample of `size` others, in table order."""
    blank = pc.match_substring_regex(paths, r"^\s*$")  # 10x faster than trimming
    filled = pc.fill_null(pc.invert(blank), False)
    present = np.flatnonzero(filled.to_numpy(zero_copy_only=False))
    if present.size == 0:
        return []
    rest = present[1:]
    chosen = np.random.default_rng(seed).choice(rest, min(size, rest.size), replace=False)
    return [paths[int(i)].as_py() for i in sorted({int(present[0]), *map(int, chosen)})]


def most_common_prefix(paths: Sequence[str], share: float = COMMON_SHARE) -> tuple[str, float]:
    """The deepest folder prefix (ending in '/') that at least `share` of `paths` start
    with, or else the most frequent first folder; with the share of paths having it."""
    folders = [path.split("/")[:-1] for path in paths]
    best = None
    for depth in range(1, max(map(len, folders), default=0) + 1):
        counts = Counter("/".join(parts[:depth]) + "/" for parts in folders if len(parts) >= depth)
        prefix, count = counts.most_common(1)[0]
        if best is None or count / len(paths) >= share:
            best = (prefix, count / len(paths))
        if count / len(paths) < share:
            break
    return best if best is not None else ("", 0.0)


def _local_exists(path: str) -> str:
    return FOUND if Path(path).is_file() else MISSING


def _object_exists(url: str) -> str:
    try:
        object_store.current_store().head(url)
    except ImageMissing:
        return MISSING
    except Exception as error:  # the store's clients raise many kinds: say which, in words
        return f"the store refused it ({error})"
    return FOUND


def exists_checker(dicom_root: str) -> Callable[[str], str]:
    """Whether a resolved path names an image: a file, or an object under a URL root."""
    return _object_exists if object_store.is_url(dicom_root) else _local_exists


def probe_paths(
    table_paths: Sequence[str], dicom_root: str, path_rewrite: Sequence[tuple[str, str]]
) -> list[Probe]:
    """Each table path mapped as stage 1 maps it, and what is found there."""
    array = pa.array(list(table_paths), pa.string())
    local = rewrite_paths(array, dicom_root, path_rewrite)
    inside = inside_root(local, dicom_root).to_pylist()
    local_paths = local.to_pylist()
    below = [path for path, is_inside in zip(local_paths, inside, strict=True) if is_inside]
    # An object store answers each HEAD after a round trip: they are sent concurrently.
    workers = object_store.current_store().options.max_concurrency
    with ThreadPoolExecutor(workers if object_store.is_url(dicom_root) else 1) as pool:
        found = dict(zip(below, pool.map(exists_checker(dicom_root), below), strict=True))
    return [
        Probe(path, resolved, found[resolved] if is_inside else OUTSIDE)
        for path, resolved, is_inside in zip(table_paths, local_paths, inside, strict=True)
    ]


def suggest_rewrite(
    table_paths: Sequence[str], dicom_root: str, tries: int = SUGGESTION_TRIES
) -> tuple[str, str, str] | None:
    """(from, to, image) for the first of `tries` table paths whose tail, after dropping
    leading folders, names an image under `dicom_root`."""
    exists, root = exists_checker(dicom_root), root_prefix(dicom_root)
    for path in table_paths[:tries]:
        parts = path.split("/")
        for cut in range(1, len(parts)):
            candidate = root + "/".join(parts[cut:])
            if parts[cut] and ".." not in parts[cut:] and exists(candidate) == FOUND:
                return "/".join(parts[:cut]) + "/", root, candidate
    return None


def check_paths(
    metadata: str,
    dicom_root: str,
    path_rewrite: Sequence[tuple[str, str]] = (),
    sample_size: int = 300,
) -> PathCheck | None:
    """Probe a sample of the table's image paths; None when the table has no path to try
    (stage 1 then reports why: no rows, no `anon_dicom_path` column, empty paths)."""
    try:
        if PATH_COLUMN not in column_names(metadata):
            return None
        paths, whole = path_column(metadata)
    except TableError:
        return None  # stage 1 refuses the table with its own one-line message
    sample = sample_paths(paths, sample_size)
    if not sample:
        return None
    probes = probe_paths(sample, dicom_root, path_rewrite)
    found = any(probe.outcome == FOUND for probe in probes)
    suggestion = None if found else suggest_rewrite(sample, dicom_root)
    return PathCheck(probes, len(paths), whole, most_common_prefix(sample), suggestion)


def path_column(metadata: str) -> tuple[pa.Array, bool]:
    """The table's anon_dicom_path column, and whether it is the whole table's: of a CSV
    in an object store, only the rows of its first REMOTE_CSV_BYTES (stage 1 reads the
    whole object anyway; reading it twice before every run would double the transfer)."""
    if object_store.is_url(metadata) and not is_parquet(metadata):
        head, whole = read_csv_head(metadata, [PATH_COLUMN], REMOTE_CSV_BYTES)
        return head[PATH_COLUMN].combine_chunks(), whole
    return read_table(metadata, [PATH_COLUMN])[PATH_COLUMN].combine_chunks(), True


def _example(probe: Probe) -> str:
    return f"{probe.table_path} -> {probe.local_path} ({probe.outcome})"


def _root_state(dicom_root: str) -> str:
    if object_store.is_url(dicom_root) or Path(dicom_root).is_dir():
        return ""
    return " (that folder does not exist)"


def failure_message(
    check: PathCheck, metadata: str, dicom_root: str, path_rewrite: Sequence[tuple[str, str]]
) -> str:
    """What a check that found no image says: an example, the prefixes, the fix."""
    probe = check.probes[0]
    sources = [source for source, _ in path_rewrite]
    matched = sum(any(p.table_path.startswith(s) for s in sources) for p in check.probes)
    tried = ", ".join(sources) or "none (path_rewrite is empty)"
    tried += f" (they start {matched} of the {len(check.probes)} sampled paths)"
    lines = [
        f"none of {len(check.probes)} image paths sampled from the "
        f"{'' if check.whole_table else 'first '}{check.rows:,} rows of {metadata} "
        "leads to an image "
        f"under dicom_root {dicom_root}{_root_state(dicom_root)}.",
        f"  table path:    {probe.table_path}",
        f"  became:        {probe.local_path} ({probe.outcome})",
        f"  from prefixes: {tried}",
    ]
    prefix, share = check.common_prefix
    lines.append(f"  most common prefix of the table's paths: {prefix} ({share:.0%} of the sample)")
    if check.suggestion is not None:
        source, target, image = check.suggestion
        lines += [
            f"  this rewrite finds {image}:",
            "    path_rewrite:",
            f"      - from: {source}",
            f"        to: {target}",
        ]
    lines.append("Fix path_rewrite or dicom_root, or set checks.paths: false to skip this check.")
    return "\n".join(lines)


def warning_message(check: PathCheck, metadata: str) -> str | None:
    """What a check that found some images but not all says (None when all were found)."""
    missed = [probe for probe in check.probes if probe.outcome != FOUND]
    if not missed:
        return None
    sampled = len(check.probes)
    lines = [
        f"{len(missed)} of {sampled} image paths sampled from {metadata} "
        f"({len(missed) / sampled:.0%}) lead to no image; such rows are dropped or refused "
        "(path_outside_root, image_missing, image_unavailable), e.g.:",
        *(f"  {_example(probe)}" for probe in missed[:EXAMPLES]),
    ]
    return "\n".join(lines)


def preflight_paths(
    metadata: str,
    dicom_root: str,
    path_rewrite: Sequence[tuple[str, str]] = (),
    sample_size: int = 300,
) -> str | None:
    """Check the table's image paths before a run: PathCheckError when none leads to an
    image; otherwise the warning to show when some do not (None when all do)."""
    check = check_paths(metadata, dicom_root, path_rewrite, sample_size)
    if check is None:
        return None
    if check.found == 0:
        raise PathCheckError(failure_message(check, metadata, dicom_root, path_rewrite))
    return warning_message(check, metadata)
