"""Atomic writes: a file appears under its final name complete, or not at all.

Every output the pipeline writes goes through `atomic_output`: the writer fills a
temporary file beside the final one, which is renamed onto it only when the writer
finished without an exception (a rename within one folder is atomic on POSIX). A
killed job leaves at most a hidden temporary, removed by the next writer of that file.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary name beside `path`, moved onto `path` only if the block succeeds.

    Temporaries a killed writer of the same file left behind are removed first.
    """
    final = Path(path)
    for stale in final.parent.glob(f".{glob.escape(final.name)}.*.tmp"):
        stale.unlink(missing_ok=True)
    temporary = final.with_name(f".{final.name}.{os.getpid()}.tmp")
    try:
        yield temporary
        temporary.replace(final)
    finally:
        temporary.unlink(missing_ok=True)


def write_json(path: str | Path, data: Any) -> None:
    """Write `data` as indented JSON (one trailing newline) to `path`, atomically."""
    with atomic_output(path) as temporary:
        temporary.write_text(json.dumps(data, indent=2) + "\n")
