"""What version of the code made a result: a digest for the caches that must not outlive it."""

from __future__ import annotations

import hashlib
from functools import cache
from importlib.metadata import version
from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


@cache
def code_digest(libraries: tuple[str, ...] = ()) -> bytes:
    """SHA-256 of every source file of embedpatch and of the versions of `libraries`: any
    change to the code, or an upgrade of one of those libraries, gives another digest."""
    digest = hashlib.sha256()
    for path in sorted(_PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(_PACKAGE).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
    for library in libraries:
        digest.update(f"{library}={version(library)}\0".encode())
    return digest.digest()
