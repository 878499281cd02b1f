"""Map the table's anon_dicom_path values onto the DICOM root, refusing escapes.

The root is a local folder or an object store URL (`s3://bucket/prefix`); a URL's
part after `scheme://` follows the same path rules as a local path. Pure string work
on Arrow arrays (POSIX path semantics, no filesystem call), so it stays fast on the
full table. Because nothing is resolved on disk, a symlink inside dicom_root that
points outside it is not caught here: the stage that opens the file must check the
resolved path (os.path.realpath) before reading it.
"""

from __future__ import annotations

import posixpath
from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

# Paths `normalize` would change: empty, repeated (but a URL's `://`) or trailing slashes,
# . or .. parts.
_NOT_NORMALIZED = r"^$|(^|[^:])//|(^|/)\.\.?(/|$)|/$"
_SCHEME = "://"
# What follows the root prefix in a path not strictly below the root: nothing (the root
# itself), a slash (an absolute path for the '.' root, or '//'), '.' or a climbing '..'.
_NOT_BELOW = r"^(/|$|\.\.?(/|$))"


def normalize(path: str) -> str:
    """posixpath.normpath of a path, or of a URL's part after `scheme://`."""
    if _SCHEME not in path:
        return posixpath.normpath(path)
    scheme, rest = path.split(_SCHEME, 1)
    return f"{scheme}{_SCHEME}{posixpath.normpath(rest).lstrip('/')}"


def root_prefix(dicom_root: str) -> str:
    """The normalized root with one trailing slash ("" for the working directory)."""
    root = normalize(dicom_root)
    return "" if root == "." else root.rstrip("/") + "/"


def rewrite_paths(
    paths: pa.Array, dicom_root: str, path_rewrite: Sequence[tuple[str, str]] = ()
) -> pa.Array:
    """Local normalized paths for the table's paths (nulls stay null).

    The first (from_prefix, to_prefix) pair whose from_prefix starts the path
    replaces that prefix; a path no pair matched that is relative is taken relative
    to dicom_root. The result is normalized like os.path.normpath.
    """
    paths = paths.cast(pa.string())
    result = paths
    matched = pa.array(np.zeros(len(paths), dtype=bool))
    for source, target in path_rewrite:
        hit = pc.and_not(pc.fill_null(pc.starts_with(paths, source), False), matched)
        rewritten = pc.binary_join_element_wise(
            target, pc.utf8_slice_codeunits(paths, len(source)), ""
        )
        result = pc.if_else(hit, rewritten, result)
        matched = pc.or_(matched, hit)
    anchored = pc.or_(pc.starts_with(paths, "/"), pc.match_substring(paths, _SCHEME))
    relative = pc.and_not(pc.invert(pc.fill_null(anchored, True)), matched)
    under_root = pc.binary_join_element_wise(root_prefix(dicom_root), paths, "")
    return normalize_paths(pc.if_else(relative, under_root, result))


def normalize_paths(paths: pa.Array) -> pa.Array:
    """`normalize` of every path, calling it only on the paths it would change."""
    flagged = pc.fill_null(pc.match_substring_regex(paths, _NOT_NORMALIZED), False)
    positions = np.flatnonzero(flagged.to_numpy(zero_copy_only=False))
    if positions.size == 0:
        return paths
    normalized = [normalize(path) for path in paths.take(positions).to_pylist()]
    return pc.replace_with_mask(paths, flagged, pa.array(normalized, pa.string()))


def inside_root(paths: pa.Array, dicom_root: str) -> pa.Array:
    """True where a normalized path names something strictly below dicom_root.

    Not below: the root itself, a null path, a path climbing out through leading
    '..' parts (possible for a relative root), a relative path under an absolute
    root or the reverse, and a path starting with exactly two slashes (which
    normpath keeps: implementation-defined in POSIX).
    """
    prefix = root_prefix(dicom_root)
    rest = pc.utf8_slice_codeunits(paths, len(prefix))
    below = pc.and_(
        pc.starts_with(paths, prefix), pc.invert(pc.match_substring_regex(rest, _NOT_BELOW))
    )
    return pc.fill_null(below, False)
