"""One extraction job: an exam's specification in, its complete shard out."""

from __future__ import annotations

import hashlib
import logging

from embedpatch.extract import ExamSpec, PatchSettings, extract_exam
from embedpatch.shards import write_shard

log = logging.getLogger(__name__)


def sha256(text: str) -> str:
    """Hex SHA-256 of a text (the canonical JSON of a spec or of the settings)."""
    return hashlib.sha256(text.encode()).hexdigest()


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
        "spec_hash": sha256(spec_json),
    }
    write_shard(shard_path, exam, attrs, compression=settings.compression)
    log.info(
        "exam %s: %d patches, %d images refused",
        exam.acc_anon,
        len(exam.patches),
        len(exam.rejections),
    )
