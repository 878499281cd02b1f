"""An image's identity: what changes when its bytes may have changed, read without them.

A local file's size and modification time (a stat), or an object's ETag, size and
last-modified time (one HEAD). Stage 2's outcome cache and the figure cache key on it.
"""

from __future__ import annotations

import os

from embedpatch.io import object_store
from embedpatch.io.errors import ImageError


def image_identity(location: str) -> str | None:
    """Size and modification time of a file, or an object's identity; None when missing or
    the store fails."""
    try:
        if object_store.is_url(location):
            return object_store.identity(location)
        status = os.stat(location)  # noqa: PTH116 (a Path per row: 1.2 s of 4 at 50,000 exams)
    except (OSError, ImageError):
        return None
    return f"{status.st_size}:{status.st_mtime_ns}"
