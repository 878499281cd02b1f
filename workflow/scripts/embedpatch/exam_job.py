"""Extraction jobs: an exam's specification in, its complete shard out; a batch of exams
per Snakemake job, rewriting only the shards that are missing or stale."""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Mapping
from pathlib import Path

from embedpatch import object_store
from embedpatch.atomic import atomic_output
from embedpatch.batches import batch_name
from embedpatch.dicom import ImageError
from embedpatch.extract import extract_exam
from embedpatch.logs import with_progress
from embedpatch.manifest import read_shards
from embedpatch.patch_spec import ExamSpec, PatchSettings, SpecError, canonical_json
from embedpatch.reasons import RoiReason
from embedpatch.shards import complete_shard_attrs, write_shard

log = logging.getLogger(__name__)

SHARD_NAME = re.compile(r"^(\d+)\.h5$")


class BatchError(RuntimeError):
    """Some exams of a batch failed; the others' shards are written."""


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


def extract_exam_shard(
    spec_json: str, settings_json: str, shard_path: str, dicom_root: str | None = None
) -> None:
    """Cut the exam's patches and write them, with their provenance, to `shard_path`.

    `dicom_root`: images whose real path leaves it are refused, not read.
    """
    settings = PatchSettings.from_json(settings_json)
    exam = extract_exam(ExamSpec.from_json(spec_json), settings, dicom_root)
    attrs = {
        "config_hash": sha256(settings_json),
        "config": settings_json,
        "spec_hash": spec_hash(spec_json),
        "unavailable_images": int((exam.rejections["reason"] == RoiReason.IMAGE_UNAVAILABLE).sum()),
    }
    write_shard(shard_path, exam, attrs, compression=settings.compression)
    log.info(
        "exam %s: %d patches, %d images refused",
        exam.acc_anon,
        len(exam.patches),
        len(exam.rejections),
    )


def _modified_ns(location: str) -> int | None:
    """When the file or object at `location` was last modified (ns), None if it is missing."""
    try:
        if object_store.is_url(location):
            return object_store.modified_ns(location)
        return Path(location).stat().st_mtime_ns
    except (OSError, ImageError):
        return None


def _images_newer_than(spec_json: str, when_ns: int) -> bool:
    """Whether an image of the exam was modified after `when_ns` (missing images are not:
    the shard already records them as refused). A malformed specification counts as
    newer: extraction then reports it, for this exam alone."""
    try:
        images = ExamSpec.from_json(spec_json).images
    except SpecError:
        return True
    for image in images:
        modified = _modified_ns(image.dicom_path)
        if modified is not None and modified > when_ns:
            return True
    return False


def shard_is_current(shard_path: str | Path, spec_json: str, settings_json: str) -> bool:
    """Whether `shard_path` is what extraction would write again: a complete shard made
    from this specification and these settings, no image of the exam newer, and none
    that the object store failed to serve (those are tried again)."""
    attrs = complete_shard_attrs(shard_path)
    return (
        attrs is not None
        and attrs.get("spec_hash") == spec_hash(spec_json)
        and attrs.get("config_hash") == sha256(settings_json)
        and not attrs.get("unavailable_images")
        and not _images_newer_than(spec_json, Path(shard_path).stat().st_mtime_ns)
    )


def _remove_departed(shard_dir: Path, batch: str, n_batches: int, kept: set[str]) -> list[str]:
    """Delete shards of this batch whose exams are no longer in it; their acc_anon."""
    removed = []
    for path in sorted(shard_dir.glob("*.h5")):
        match = SHARD_NAME.match(path.name)
        if match and match[1] not in kept and batch_name(match[1], n_batches) == batch:
            path.unlink()
            removed.append(match[1])
    return removed


def extract_batch(
    specs: Mapping[str, str],
    settings_json: str,
    shard_dir: str,
    record_path: str,
    table_path: str,
    n_batches: int,
    dicom_root: str | None = None,
) -> dict[str, int]:
    """Bring the shard of every exam of one batch up to date, then write its record and
    its table.

    `specs`: acc_anon -> specification, all in the batch `record_path` is named after.
    Shards already current are kept as they are; shards of exams that left the batch
    are deleted. An exam that fails is logged and the others go on; the batch then
    raises BatchError without writing its record (its job fails, and a rerun
    recomputes only what is still missing). The record (JSON) lists the batch's
    shards with their specification hashes, and the images extraction refused
    (`rejections`); the table (Parquet) holds every patch's info row with its `shard`,
    read back from the complete shards, so that the manifest is built from one table
    per batch rather than from every shard.
    """
    batch = Path(record_path).stem
    directory = Path(shard_dir)
    counts = {"extracted": 0, "current": 0, "failed": 0}
    shards = {}
    for acc_anon, spec_json in with_progress(specs.items(), f"batch {batch}", "exams"):
        if batch_name(acc_anon, n_batches) != batch:
            raise ValueError(f"exam {acc_anon} does not belong to batch {batch}")
        shard = directory / f"{acc_anon}.h5"
        shards[acc_anon] = {"shard": str(shard), "spec_hash": spec_hash(spec_json)}
        if shard_is_current(shard, spec_json, settings_json):
            counts["current"] += 1
            continue
        try:
            extract_exam_shard(spec_json, settings_json, str(shard), dicom_root)
            counts["extracted"] += 1
        except Exception:
            log.exception("exam %s failed", acc_anon)
            counts["failed"] += 1
    removed = _remove_departed(directory, batch, n_batches, set(specs))
    log.info("batch %s: %s, %d departed shards removed", batch, counts, len(removed))
    if counts["failed"]:
        raise BatchError(f"{counts['failed']} of {len(specs)} exams of batch {batch} failed")
    patches, rejections = read_shards([shards[acc]["shard"] for acc in sorted(shards)])
    record = {
        "batch": batch,
        "config_hash": sha256(settings_json),
        "exams": shards,
        "rejections": json.loads(rejections.to_json(orient="records")),
        "object_store": object_store.TRANSFER.as_dict(),
    }
    Path(record_path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(table_path) as temporary:
        patches.to_parquet(temporary, index=False)
    with atomic_output(record_path) as temporary:
        temporary.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    return counts | {"removed": len(removed)}
