"""The extraction plan: every exam's specification, read from the stage-2 tables, in batches.

The specification itself, its rules and its canonical JSON are embedpatch.patches.spec's
ExamSpec; its content is embedpatch.patches.exam_specs's, which this module feeds with
the tables and the settings. The extraction rule carries its batch's specifications as
a Snakemake `params` value (embedpatch.patches.batches): Snakemake reruns
exactly the batches in which a specification changed (new ROIs, a new image, a
changed box), and none when the tables are only rewritten or reordered; each shard
records the hash of its exam's specification.

Every batch job is a Snakemake process of its own (on a cluster, on another node), which
parses the workflow again and asks for its batch's specifications. The main process
builds them all, places the exams in batches (the saved layout extended,
embedpatch.patches.batches), which decides which batches rerun, and publishes each
batch's specifications as a file (`plan_batches`), named by a key of the tables'
versions, the settings and the layout; a job reads only its own file
(`job_batch_specs`), the same specifications, so its Snakemake records the same params.
The next plan builds again only the exams whose rows changed
(exam_specs.update_exam_specs) and takes the others from that publication.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd

from embedpatch.bulk import collector_paused
from embedpatch.config import resolve_inputs
from embedpatch.patches.batches import BatchLayout, auto_batch_count, plan_layout
from embedpatch.patches.exam_specs import (
    IMAGE_ROW,
    ExamSpecBuild,
    build_exam_specs,
    update_exam_specs,
)
from embedpatch.patches.negative_images import NegativeChoice, negative_images
from embedpatch.patches.spec import PatchSettings
from embedpatch.vocab import FLAT_TYPES, IMAGE_TYPE

log = logging.getLogger(__name__)

DIGESTS = "exam_digests.json"
"""Beside the published batches: each exam's digest, from which the next plan knows
which exams to build again."""

DEMO_NEGATIVES_PER_IMAGE = 2


def negatives_per_image(config: Mapping[str, Any]) -> int:
    """patches.negatives_per_image, where null means on for the demo cohort, off for user data."""
    chosen = config["patches"]["negatives_per_image"]
    if chosen is not None:
        return chosen
    return DEMO_NEGATIVES_PER_IMAGE if resolve_inputs(config).is_demo else 0


def negative_choice(config: Mapping[str, Any]) -> NegativeChoice:
    """Where negative windows come from (patches.negative_images)."""
    return NegativeChoice.from_config(config["patches"]["negative_images"])


def extraction_settings(config: Mapping[str, Any]) -> str:
    """The settings every extraction job gets (spec.PatchSettings), as canonical JSON:
    a change reruns all exams.

    Left out: negatives_per_image and negative_images (part of each exam's own
    specification) and batches
    (which job an exam runs in, not what its shard holds).
    """
    return PatchSettings.settings_json(config["patches"])


def negative_candidates(filtered: pd.DataFrame, rejected: pd.DataFrame) -> pd.DataFrame:
    """2D / C-view images of the filtered table with no refused ROI."""
    flat = filtered[IMAGE_TYPE].isin(FLAT_TYPES)
    refused = filtered["anon_dicom_path"].isin(rejected["anon_dicom_path"])
    return filtered[flat & ~refused]


def _read(path: str, columns: list[str] | None = None) -> pd.DataFrame:
    return pd.read_parquet(path, columns=columns, dtype_backend="numpy_nullable")


def batch_count(setting: int | str, rois: str) -> int:
    """The configured number of batches, or for "auto" the one sized to the exams of the
    ROI table (`auto_batch_count`)."""
    if setting != "auto":
        return int(setting)
    return auto_batch_count(_exam_count(rois, Path(rois).stat().st_mtime_ns))


@cache
def _exam_count(rois: str, version: int) -> int:
    """Exams of the ROI table (read once per process and file version)."""
    return pd.read_parquet(rois, columns=["acc_anon"])["acc_anon"].nunique()


@dataclass(frozen=True)
class SpecInputs:
    """What the exams' specifications are built from: the stage-2 tables, the filtered
    table (for negatives) and the settings choosing negatives and batches."""

    rois: str
    rejected: str
    filtered: str
    negatives_per_image: int
    negative_choice: NegativeChoice
    seed: int
    n_batches: int

    @classmethod
    def from_config(
        cls, config: Mapping[str, Any], rois: str, rejected: str, filtered: str
    ) -> SpecInputs:
        """The inputs of a run with this validated config and these tables."""
        return cls(
            rois=rois,
            rejected=rejected,
            filtered=filtered,
            negatives_per_image=negatives_per_image(config),
            negative_choice=negative_choice(config),
            seed=config["patches"]["seed"],
            n_batches=batch_count(config["patches"]["batches"], rois),
        )

    def stamp(self) -> tuple[int, ...]:
        """The tables' modification times (ns): a new version of one is a new build."""
        return tuple(
            Path(path).stat().st_mtime_ns for path in (self.rois, self.rejected, self.filtered)
        )

    def key(self) -> str:
        """A digest of these inputs and the tables' versions: names one build's batch files."""
        return hashlib.sha256(repr((self, self.stamp())).encode()).hexdigest()


def chosen_negative_images(inputs: SpecInputs) -> pd.DataFrame:
    """The images that get negative windows (an empty table when negatives are off)."""
    rois = _read(inputs.rois, ["anon_dicom_path"])
    if inputs.negatives_per_image == 0:
        return rois.iloc[0:0]
    columns = list(dict.fromkeys(IMAGE_ROW + inputs.negative_choice.columns))
    candidates = negative_candidates(
        _read(inputs.filtered, columns), _read(inputs.rejected, ["anon_dicom_path"])
    )
    return negative_images(candidates, rois["anon_dicom_path"], inputs.negative_choice, inputs.seed)


@cache
def _cached_specs(inputs: SpecInputs, stamp: tuple) -> dict[str, str]:
    with collector_paused():
        return build_exam_specs(
            _read(inputs.rois), chosen_negative_images(inputs), inputs.negatives_per_image
        )


def load_exam_specs(inputs: SpecInputs) -> dict[str, str]:
    """acc_anon -> specification of every exam with work, from the stage-2 tables (built
    once per process and file version: Snakemake asks for one batch's specifications
    per job)."""
    return _cached_specs(inputs, inputs.stamp())


# ---- the batches: planned by the main process, read by each job ---------------------------


def plan_batches(
    inputs: SpecInputs, layout_path: str | Path, folder: str | Path
) -> dict[str, dict[str, str]]:
    """batch -> {acc_anon: specification}: the main process's plan (once per process and
    version of the inputs). The saved layout at `layout_path` is extended to this run's
    exams (embedpatch.patches.batches) and saved again, and each batch's specifications
    are published under `folder` for its job (`publish_batch_specs`)."""
    return _planned(inputs, inputs.stamp(), str(layout_path), str(folder))


@cache
def _planned(
    inputs: SpecInputs, stamp: tuple, layout_path: str, folder: str
) -> dict[str, dict[str, str]]:
    with collector_paused():
        build, built = update_exam_specs(
            _read(inputs.rois),
            chosen_negative_images(inputs),
            inputs.negatives_per_image,
            published_build(folder),
        )
    log.info("specifications: %d of %d exams built, the others published before", built,
             len(build.specs))  # fmt: skip
    layout = run_layout(inputs, build.specs, layout_path)
    layout.save(layout_path)
    batches = layout.group(build.specs)
    publish_batch_specs(batches, folder, publication_key(inputs, layout_path), build.digests)
    return batches


def run_layout(
    inputs: SpecInputs, specs: Mapping[str, str], layout_path: str | Path
) -> BatchLayout:
    """This run's layout: the one saved at `layout_path` extended to the exams of `specs`
    (by hash when none is saved)."""
    return plan_layout(BatchLayout.read(layout_path), specs.keys(), inputs.n_batches)


def publication_key(inputs: SpecInputs, layout_path: str | Path) -> str:
    """Names one version of the published specifications: the inputs' key
    (`SpecInputs.key`) and the saved layout's bytes."""
    try:
        layout = hashlib.sha256(Path(layout_path).read_bytes()).hexdigest()
    except OSError:
        layout = "no layout"
    return hashlib.sha256(f"{inputs.key()} {layout}".encode()).hexdigest()


def publish_batch_specs(
    batches: Mapping[str, Mapping[str, str]],
    folder: str | Path,
    key: str,
    digests: Mapping[str, str],
) -> bool:
    """Write each batch's specifications to `folder`/`key`/<batch>.json, once per key, so
    that a batch job reads only its own, and the exams' digests (exam_specs.exam_digests)
    to DIGESTS in the same folder, for the next plan; whether they were written. The
    files are written into a temporary folder renamed into place when complete; other
    keys' folders are removed."""
    folder = Path(folder)
    if (folder / key).is_dir():
        return False
    folder.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=".publishing-", dir=folder))
    try:
        for batch, specs in batches.items():
            (temporary / f"{batch}.json").write_text(json.dumps(specs, separators=(",", ":")))
        (temporary / DIGESTS).write_text(json.dumps(digests, separators=(",", ":")))
        temporary.rename(folder / key)
    except OSError:
        shutil.rmtree(temporary, ignore_errors=True)
        if not (folder / key).is_dir():  # another process published the same version
            raise
    for other in folder.iterdir():
        if other.name == key:
            continue
        if other.is_dir():
            shutil.rmtree(other, ignore_errors=True)
        else:
            other.unlink(missing_ok=True)
    return True


def _text_mapping(data: Any, what: object) -> dict[str, str]:
    """`data` if it is a JSON object of texts; ValueError otherwise."""
    if not isinstance(data, dict) or not all(
        isinstance(key, str) and isinstance(value, str) for key, value in data.items()
    ):
        raise ValueError(f"{what} is not an object of texts")
    return data


def published_build(folder: str | Path) -> ExamSpecBuild | None:
    """The specifications published last under `folder` and their exams' digests; None
    when there are none, or they cannot be read (every exam is then built)."""
    digest_files = list(Path(folder).glob(f"[!.]*/{DIGESTS}"))
    if len(digest_files) != 1:  # none yet, or a publication left half-removed
        return None
    published = digest_files[0].parent
    try:
        specs: dict[str, str] = {}
        for path in published.glob("b*.json"):
            specs |= _text_mapping(json.loads(path.read_text()), path)
        digests = _text_mapping(json.loads((published / DIGESTS).read_text()), DIGESTS)
        return ExamSpecBuild(specs, digests)
    except (OSError, ValueError) as error:
        log.warning("published specifications in %s unreadable, building all: %s", folder, error)
        return None


def job_batch_specs(
    inputs: SpecInputs, batch: str, layout_path: str | Path, folder: str | Path
) -> dict[str, str]:
    """One batch's specifications, as `plan_batches` gave them to the main process: read
    from the file it published for this version of the inputs and layout, or, when there
    is none, built from the tables (every exam's) and grouped by the saved layout."""
    published = Path(folder) / publication_key(inputs, layout_path)
    if published.is_dir():
        path = published / f"{batch}.json"
        return json.loads(path.read_text()) if path.is_file() else {}
    log.warning("no published specifications for %s: building every exam's", batch)
    specs = load_exam_specs(inputs)
    return run_layout(inputs, specs, layout_path).group(specs).get(batch, {})
