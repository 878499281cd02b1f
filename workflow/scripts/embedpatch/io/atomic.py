"""Atomic writes: a file appears under its final name complete, or not at all.

Every output the pipeline writes goes through `atomic_output`: the writer fills a
temporary file beside the final one, which is renamed onto it only when the writer
finished without an exception (a rename within one folder is atomic on POSIX). A
killed job leaves at most a hidden temporary, removed by the next process that writes
that file.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_TEMPORARY = re.compile(r"^\.(?P<final>.+)\.\d+\.tmp$")
_left_behind: dict[Path, dict[str, set[str]]] = {}


def _temporaries_left(folder: Path) -> dict[str, set[str]]:
    """Final name -> the temporaries of it that were in `folder` when this process first
    wrote there. Listed once per folder and process: listing a folder of 50,000 shards
    for each shard written made a run's writes quadratic in its exams."""
    key = folder.absolute()
    if key not in _left_behind:
        found: dict[str, set[str]] = {}
        with contextlib.suppress(FileNotFoundError), os.scandir(folder) as entries:
            for entry in entries:
                match = _TEMPORARY.match(entry.name)
                if match:
                    found.setdefault(match["final"], set()).add(entry.name)
        _left_behind[key] = found
    return _left_behind[key]


@contextlib.contextmanager
def atomic_output(path: str | Path) -> Iterator[Path]:
    """Yield a temporary name beside `path`, moved onto `path` only if the block succeeds.

    Temporaries of the same file that a killed writer left behind are removed first.
    """
    final = Path(path)
    for name in _temporaries_left(final.parent).pop(final.name, ()):
        (final.parent / name).unlink(missing_ok=True)
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
