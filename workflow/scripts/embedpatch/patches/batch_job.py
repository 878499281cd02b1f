"""Extraction jobs: an exam's specification in, its complete shard out; a batch of exams
per Snakemake job, rewriting only the shards that are missing or stale.

A batch keeps its state beside the shards, in `state/<batch>.json` and
`state/<batch>.parquet` (not Snakemake outputs, so a forced rerun does not delete them):
for each exam the hashes its shard was made from, the shard's size and modification
time when written, the images extraction refused, and its patches' info rows. A
re-check decides from that alone that a shard is current, without opening it: the
same specification and settings hashes, no image the object store failed to serve,
the shard file still of the recorded size and modification time (a deleted, replaced
or truncated shard is not), and no image of the exam modified after the shard. Damage
that keeps a file's size and time (a flipped bit) is found only by opening the shard:
`verify_shards` does that for every shard on request. Exams without a state entry
(results of an older version, a lost state file) are checked by opening their shard.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from embedpatch.dicom import ImageError
from embedpatch.io import object_store
from embedpatch.io.atomic import atomic_output
from embedpatch.logs import with_progress
from embedpatch.patches.batches import RECORD_DIR, STATE_DIR
from embedpatch.patches.identity import sha256, spec_hash
from embedpatch.reasons import RETRIED_NEXT_RUN

if TYPE_CHECKING:
    import pandas as pd

    from embedpatch.patches.shards import ExamPatches

log = logging.getLogger(__name__)

STATE_VERSION = 2
"""Version 2: info rows with `patches_sha256` (shard schema 4); older states are ignored."""


class BatchError(RuntimeError):
    """Some exams of a batch failed; the others' shards are written."""


def extract_exam_shard(
    spec_json: str, settings_json: str, shard_path: str, dicom_root: str | None = None
) -> ExamPatches:
    """Cut the exam's patches and write them, with their provenance, to `shard_path`;
    the exam's patches, info rows and rejections as written.

    `dicom_root`: images whose real path leaves it are refused, not read.
    """
    # Imported on use: a re-check that finds every shard current needs none of them.
    from embedpatch.patches.extract import extract_exam
    from embedpatch.patches.shards import write_shard
    from embedpatch.patches.spec import ExamSpec, PatchSettings

    settings = PatchSettings.from_json(settings_json)
    exam = extract_exam(ExamSpec.from_json(spec_json), settings, dicom_root)
    attrs = {
        "config_hash": sha256(settings_json),
        "config": settings_json,
        "spec_hash": spec_hash(spec_json),
        "unavailable_images": _unavailable(exam.rejections),
    }
    write_shard(shard_path, exam, attrs, compression=settings.compression)
    log.info(
        "exam %s: %d patches, %d images refused",
        exam.acc_anon,
        len(exam.patches),
        len(exam.rejections),
    )
    return exam


def _unavailable(rejections: pd.DataFrame) -> int:
    """Images the object store failed to serve or that changed while read (tried again at
    the next run)."""
    if not len(rejections):
        return 0
    return int(rejections["reason"].isin(list(RETRIED_NEXT_RUN)).sum())


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
        locations = [image["dicom_path"] for image in json.loads(spec_json)["images"]]
    except (ValueError, TypeError, KeyError):
        return True
    for location in locations:
        modified = _modified_ns(location)
        if modified is not None and modified > when_ns:
            return True
    return False


def shard_is_current(shard_path: str | Path, spec_json: str, settings_json: str) -> bool:
    """Whether `shard_path` is what extraction would write again, found by opening it: a
    complete shard of the current schema made from this specification and these
    settings, no image of the exam newer, and none that the object store failed to serve
    (those are tried again)."""
    from embedpatch.patches.shards import SCHEMA_VERSION, complete_shard_attrs

    attrs = complete_shard_attrs(shard_path)
    return (
        attrs is not None
        and attrs.get("schema_version") == SCHEMA_VERSION
        and attrs.get("spec_hash") == spec_hash(spec_json)
        and attrs.get("config_hash") == sha256(settings_json)
        and not attrs.get("unavailable_images")
        and not _images_newer_than(spec_json, Path(shard_path).stat().st_mtime_ns)
    )


def _file_stamp(path: Path) -> list[int] | None:
    """[size, modification time in ns] of a file, None if it is missing."""
    try:
        stat = path.stat()
    except OSError:
        return None
    return [stat.st_size, stat.st_mtime_ns]


def state_entry_is_current(
    entry: Mapping[str, Any] | None, shard: Path, spec_json: str, settings_hash: str
) -> bool:
    """Whether the batch state's entry of an exam shows its shard current (module
    docstring), without opening the shard: a stat of it and of each of its images."""
    if not entry:
        return False
    stamp = _file_stamp(shard)
    return (
        entry["config_hash"] == settings_hash
        and not entry["unavailable_images"]
        and stamp is not None
        and stamp == entry["shard_stamp"]
        and entry["spec_hash"] == spec_hash(spec_json)
        and not _images_newer_than(spec_json, stamp[1])
    )


def _entry(
    spec_json: str, settings_hash: str, shard: Path, info: pd.DataFrame, rejections: pd.DataFrame
) -> dict[str, Any]:
    """A batch state entry for a shard just written or checked."""
    return {
        "spec_hash": spec_hash(spec_json),
        "config_hash": settings_hash,
        "shard_stamp": _file_stamp(shard),
        "unavailable_images": _unavailable(rejections),
        "n_patches": len(info),
        "rejections": json.loads(rejections.to_json(orient="records")) if len(rejections) else [],
    }


class BatchState:
    """A batch's state files (module docstring): entries by acc_anon, info rows by shard."""

    def __init__(self, shard_dir: Path, batch: str) -> None:
        folder = shard_dir / STATE_DIR
        self.json_path, self.table_path = folder / f"{batch}.json", folder / f"{batch}.parquet"
        self.entries: dict[str, dict[str, Any]] = {}
        try:
            saved = json.loads(self.json_path.read_text())
            if saved.get("version") == STATE_VERSION and self.table_path.is_file():
                self.entries = saved["exams"]
        except (OSError, ValueError, KeyError):
            self.entries = {}

    def rows(self) -> pd.DataFrame:
        """The saved info rows (with `shard`), an empty table when there are none."""
        import pandas as pd

        from embedpatch.patches.manifest import no_patches

        if not self.entries:
            return no_patches()
        return pd.read_parquet(self.table_path)

    def save(self, entries: Mapping[str, Mapping[str, Any]], table: pd.DataFrame) -> None:
        """Write the state files (the table first: the JSON names a complete table)."""
        self.json_path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(self.table_path) as temporary:
            table.to_parquet(temporary, index=False)
        saved = {"version": STATE_VERSION, "exams": entries}
        with atomic_output(self.json_path) as temporary:
            temporary.write_text(json.dumps(saved, sort_keys=True) + "\n")


def extract_batch(
    specs: Mapping[str, str],
    settings_json: str,
    shard_dir: str,
    record_path: str,
    table_path: str,
    dicom_root: str | None = None,
) -> dict[str, int]:
    """Bring the shard of every exam of one batch up to date, then write its record and
    its table.

    `specs`: acc_anon -> specification of the exams of the batch `record_path` is named
    after. Shards already current are kept as they are (decided from the batch state,
    see the module docstring). Shards of exams that left the cohort are deleted by the
    manifest's rule, which sees every batch (embedpatch.patches.manifest). An exam that
    fails is logged and the others go on; the batch then raises BatchError without
    writing its record (its job fails, and a rerun recomputes only what is still
    missing). The record (JSON) lists the batch's shards with their specification
    hashes and patch counts, and the images extraction refused (`rejections`); the
    table (Parquet) holds every patch's info row with its `shard`, so that the manifest
    is built from one table per batch rather than from every shard.
    """
    batch = Path(record_path).stem
    directory = Path(shard_dir)
    settings_hash = sha256(settings_json)
    state = BatchState(directory, batch)
    counts = {"extracted": 0, "current": 0, "failed": 0}
    entries: dict[str, dict[str, Any]] = {}
    fresh: dict[str, pd.DataFrame] = {}  # acc_anon -> info rows (no `shard`) not saved yet
    for acc_anon, spec_json in with_progress(specs.items(), f"batch {batch}", "exams"):
        shard = directory / f"{acc_anon}.h5"
        entry = state.entries.get(acc_anon)
        if state_entry_is_current(entry, shard, spec_json, settings_hash):
            entries[acc_anon] = entry
            counts["current"] += 1
            continue
        try:
            known = entry is not None or not shard.exists()
            if not known and shard_is_current(shard, spec_json, settings_json):
                from embedpatch.patches.shards import read_shard_tables

                info, rejections, _ = read_shard_tables(shard)
                counts["current"] += 1
            else:
                exam = extract_exam_shard(spec_json, settings_json, str(shard), dicom_root)
                info, rejections = exam.info, exam.rejections
                counts["extracted"] += 1
        except Exception:
            log.exception("exam %s failed", acc_anon)
            counts["failed"] += 1
            continue
        entries[acc_anon] = _entry(spec_json, settings_hash, shard, info, rejections)
        fresh[acc_anon] = info
    log.info("batch %s: %s", batch, counts)
    if counts["failed"]:
        raise BatchError(f"{counts['failed']} of {len(specs)} exams of batch {batch} failed")
    Path(record_path).parent.mkdir(parents=True, exist_ok=True)
    with atomic_output(table_path) as temporary:
        if fresh or set(state.entries) != set(entries):
            table = _batch_table(state, entries, fresh, directory)
            state.save(entries, table)
            table.to_parquet(temporary, index=False)
        else:  # every shard kept: the saved table is the batch's (no pandas needed)
            shutil.copyfile(state.table_path, temporary)
    _write_record(batch, settings_hash, entries, directory, record_path)
    return counts


def _batch_table(
    state: BatchState,
    entries: Mapping[str, Any],
    fresh: Mapping[str, pd.DataFrame],
    directory: Path,
) -> pd.DataFrame:
    """Every patch row of the batch's shards with its `shard`, in acc_anon order: the
    saved rows of the shards kept, the new rows of the others."""
    import numpy as np
    import pandas as pd

    saved = state.rows()
    by_shard = dict(iter(saved.drop(columns="shard").groupby(saved["shard"], sort=False)))
    shards, parts = [], []
    for acc in sorted(entries):
        shard = str(directory / f"{acc}.h5")
        part = fresh[acc] if acc in fresh else by_shard.get(shard)
        if part is not None and len(part):
            shards.append(shard)
            parts.append(part)
    if not parts:
        return saved.iloc[0:0]
    table = pd.concat(parts, ignore_index=True)
    lengths = [len(part) for part in parts]
    table.insert(0, "shard", pd.array(np.repeat(shards, lengths), dtype="str"))
    return table


def _write_record(
    batch: str,
    settings_hash: str,
    entries: Mapping[str, Mapping[str, Any]],
    directory: Path,
    record_path: str,
) -> None:
    """The batch's record (a Snakemake output): its shards and the images refused."""
    record = {
        "batch": batch,
        "config_hash": settings_hash,
        "exams": {
            acc: {
                "shard": str(directory / f"{acc}.h5"),
                "spec_hash": entry["spec_hash"],
                "n_patches": entry["n_patches"],
            }
            for acc, entry in sorted(entries.items())
        },
        "rejections": [row for _, entry in sorted(entries.items()) for row in entry["rejections"]],
        "object_store": object_store.TRANSFER.as_dict(),
    }
    with atomic_output(record_path) as temporary:
        temporary.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")


def _forget_batches_of(shard_dir: Path, exams: set[str]) -> list[str]:
    """Delete the batch records (Snakemake outputs) listing any of `exams` (acc_anon), so
    that the next run reruns those batches and what is built on them (manifest, combined
    file); the batches' names."""
    forgotten = []
    for record in sorted((shard_dir / RECORD_DIR).glob("*.json")):
        try:
            listed = set(json.loads(record.read_text())["exams"])
        except (OSError, ValueError, KeyError):
            listed = exams  # unreadable: rerun that batch too
        if listed & exams:
            record.unlink()
            forgotten.append(record.stem)
    return forgotten


def verify_shards(shard_dir: str, report_path: str | None = None) -> list[str]:
    """Open and read every shard of `shard_dir` whole (each patch decompressed); delete
    those that fail, and the records of their batches, so that the next run rewrites them
    and rebuilds the manifest and the combined file. The damaged shards' paths, also
    written to `report_path` (JSON) when given."""
    from embedpatch.patches.shards import ShardError, read_shard

    shards = sorted(Path(shard_dir).glob("*.h5"))
    damaged = []
    for path in shards:
        try:
            read_shard(path)
        except (ShardError, OSError, ValueError) as error:
            log.warning("%s: %s; deleted", path, error)
            path.unlink()
            damaged.append(str(path))
    exams = {Path(path).stem for path in damaged}
    rerun = _forget_batches_of(Path(shard_dir), exams) if damaged else []
    log.info(
        "%d shards read, %d damaged and deleted; batches to rerun: %s",
        len(shards),
        len(damaged),
        rerun,
    )
    if report_path:
        with atomic_output(report_path) as temporary:
            report = {"shards": len(shards), "damaged": damaged}
            temporary.write_text(json.dumps(report, indent=1) + "\n")
    return damaged
