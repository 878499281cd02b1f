"""Stage 2's outcome cache: a rerun reads only the images that are new or changed.

A row's outcome (its accepted and rejected records, identifiers left out) is kept under
a key made of the row's image path and ROI cells and the image's identity: size and
modification time of a file, or the object's identity (ETag, size, last-modified) in a
store. A changed image, a changed row or a new one misses the cache and is validated
again; an image with no identity (missing) and a store failure are never cached. The
whole cache belongs to one `fingerprint`: the stage's settings and the code that
validates; another fingerprint starts it afresh.

The cache is a Parquet file beside the stage's outputs, not one of them (Snakemake
deletes a rule's outputs before it runs it again), replaced atomically at the end of a
run with the entries that run used. Deleting it forces a cold run.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from embedpatch.io.atomic import atomic_output
from embedpatch.io.identity import image_identity

log = logging.getLogger(__name__)

_FINGERPRINT = b"fingerprint"
_SCHEMA = pa.schema([("key", pa.string()), ("outcome", pa.string())])


def fingerprint(settings: Mapping[str, Any], modules: Sequence[ModuleType]) -> str:
    """A hash of the settings (JSON-able) and the source of the modules deciding outcomes."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode())
    for module in modules:
        digest.update(inspect.getsource(module).encode())
    return digest.hexdigest()


class OutcomeCache:
    """Row outcomes of the previous run (read) and of this one (kept for the next)."""

    def __init__(self, path: str | Path | None, fingerprint: str) -> None:
        self._path = None if path is None else Path(path)
        self._fingerprint = fingerprint
        self._previous = self._load()
        self._kept: dict[str, str] = {}
        self.reused = self.validated = 0

    def _load(self) -> dict[str, str]:
        if self._path is None or not self._path.is_file():
            return {}
        try:
            table = pq.read_table(self._path)
        except (OSError, pa.ArrowInvalid) as error:
            log.warning("stage 2 cache %s unreadable, starting afresh: %s", self._path, error)
            return {}
        if (table.schema.metadata or {}).get(_FINGERPRINT) != self._fingerprint.encode():
            log.info("stage 2 cache %s is for other settings or code: starting afresh", self._path)
            return {}
        return dict(zip(table["key"].to_pylist(), table["outcome"].to_pylist(), strict=True))

    @staticmethod
    def key(row_cells: Mapping[str, Any], image: str) -> str | None:
        """The cache key of a row (its cells as JSON-able values) and its image, or None
        when the image has no identity."""
        identity = image_identity(image)
        if identity is None:
            return None
        text = json.dumps([image, identity, row_cells], sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()

    def get(self, key: str | None) -> Any:
        """The outcome kept under `key` (decoded JSON), or None."""
        stored = None if key is None else self._previous.get(key)
        if stored is None:
            self.validated += 1
            return None
        self.reused += 1
        self._kept[key] = stored
        return json.loads(stored)

    def put(self, key: str | None, outcome: Any) -> None:
        """Keep a row's outcome (JSON-able) for the next run."""
        if key is not None:
            self._kept[key] = json.dumps(outcome)

    def save(self) -> None:
        """Replace the cache file with this run's entries."""
        if self._path is None:
            return
        self._path.parent.mkdir(parents=True, exist_ok=True)
        table = pa.table(
            {"key": list(self._kept), "outcome": list(self._kept.values())}, schema=_SCHEMA
        ).replace_schema_metadata({_FINGERPRINT: self._fingerprint})
        with atomic_output(self._path) as temporary:
            pq.write_table(table, temporary)
        log.info(
            "stage 2 cache: %d rows reused, %d validated, %d kept in %s",
            self.reused,
            self.validated,
            len(self._kept),
            self._path,
        )
