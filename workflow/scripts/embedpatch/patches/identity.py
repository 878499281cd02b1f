"""What identifies a shard's content: the canonical JSON of an exam's specification and
of the patch settings, and their SHA-256.

Pure JSON and hashlib, no pydantic: a batch job that only re-checks its shards imports
this module, not the specification model (embedpatch.patches.spec).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def canonical_json(data: Any) -> str:
    """The one JSON text of `data`: keys sorted, no spaces (its hash identifies the content)."""
    return json.dumps(data, sort_keys=True, separators=(",", ":"))


def sha256(text: str) -> str:
    """Hex SHA-256 of a text (the canonical JSON of a spec or of the settings)."""
    return hashlib.sha256(text.encode()).hexdigest()


def spec_hash(spec_json: str) -> str:
    """Hash of what decides an exam's patches: its specification without where each image
    is read from (`dicom_path`), so a copy of the images elsewhere (another disk, a
    bucket) gives the same shards; an image is identified by its anon_dicom_path."""
    spec = json.loads(spec_json)
    for image in spec["images"]:
        image.pop("dicom_path", None)
    return sha256(canonical_json(spec))
