"""Benchmark whole-exam patch extraction and shard writing on a full-size demo cohort.

Generates (once, cached in bench/out/extract/cohort) the demo cohort at full size
(2D 3328 x 2560, DBT 64 frames of 2457 x 1890; uncompressed, JPEG 2000, RLE and
JPEG-LS files), runs stage 1 (filter) and stage 2 (ROI table) on it, builds every
exam's specification (embedpatch.patches.plan), then extracts each exam and writes its
shard, timing every stage. Patches: 512 x 512, tissue and black padding, every
listed DBT frame, NEGATIVES negative windows per 2D / C-view image.

Usage: .venv/bin/python bench/bench_extract.py [--negatives N] [--regenerate]
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from pydicom.uid import UID

from embedpatch.config import validate_config
from embedpatch.demo import SOURCE_PREFIX
from embedpatch.demo.cohort import write_demo_cohort
from embedpatch.dicom import read_header
from embedpatch.filter.stage import filter_metadata
from embedpatch.patches.extract import extract_exam
from embedpatch.patches.negative_images import NegativeChoice
from embedpatch.patches.plan import SpecInputs, load_exam_specs
from embedpatch.patches.shards import DEFAULT_COMPRESSION, write_shard
from embedpatch.patches.spec import ExamSpec, ImageSpec, PatchSettings
from embedpatch.rois.stage import run_roi_stage

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "extract"
COHORT = {"seed": 2026, "n_patients": 4, "scale": 1.0, "dbt_frames": 64}
T = TypeVar("T")
SETTINGS = {
    "size": 512,
    "padding": ["tissue", "black"],
    "dbt_frames": "all",
    "negative_margin": 64,
    "seed": 0,
    "pixel_values": "stored",
    "compression": DEFAULT_COMPRESSION,
}


class Stopwatch:
    """Seconds spent per named stage, in the order the stages first ran."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()

    def time(self, stage: str, work: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run `work(*args, **kwargs)`, adding its wall time to `stage`."""
        started = time.perf_counter()
        result = work(*args, **kwargs)
        self.seconds[stage] += time.perf_counter() - started
        return result


def cohort(regenerate: bool, watch: Stopwatch) -> Path:
    """The cached full-size demo cohort (tables/metadata.csv is written last)."""
    folder = OUT / "cohort"
    if regenerate or not (folder / "tables" / "metadata.csv").exists():
        shutil.rmtree(folder, ignore_errors=True)
        watch.time("generate cohort (once)", write_demo_cohort, folder, **COHORT)
    return folder


def tables(folder: Path, watch: Stopwatch) -> dict[str, str]:
    """Run stages 1 and 2; the paths of the tables exam specifications come from."""
    config = validate_config({})
    paths = {name: str(OUT / f"{name}.parquet") for name in ("filtered", "rois", "rejected")}
    watch.time(
        "stage 1: filter",
        filter_metadata,
        str(folder / "tables" / "metadata.csv"),
        paths["filtered"],
        str(OUT / "dropped.parquet"),
        str(OUT / "filter_summary.json"),
        filter_config=config["filter"],
        dicom_root=str(folder / "images"),
        path_rewrite=((SOURCE_PREFIX, f"{folder / 'images'}/"),),
    )
    watch.time(
        "stage 2: ROI table",
        run_roi_stage,
        paths["filtered"],
        paths["rois"],
        paths["rejected"],
        str(OUT / "roi_summary.json"),
        config["rois"],
    )
    return paths


def exam_pass(specs: dict[str, str], settings: PatchSettings) -> tuple[Stopwatch, Counter]:
    """Extract and write every exam once: seconds per stage, patches per label."""
    watch, counts = Stopwatch(), Counter()
    attrs = {"config_hash": "bench", "config": settings.to_dict()}
    for acc, text in specs.items():
        exam = watch.time("extract", extract_exam, ExamSpec.from_json(text), settings)
        path = OUT / "shards" / f"{acc}.h5"
        watch.time("write shard", write_shard, path, exam, attrs, settings.compression)
        counts.update(exam.info["label"])
        counts["rejected images"] += len(exam.rejections)
    return watch, counts


def image_kind(image: ImageSpec) -> str:
    header = read_header(image.dicom_path)
    frames = f"{header.number_of_frames} fr" if header.number_of_frames > 1 else "1 fr"
    return f"{image.image_type:<6}{frames:>6}  {UID(header.transfer_syntax_uid).name}"


def by_image_kind(specs: dict[str, str], settings: PatchSettings) -> dict[str, list[float]]:
    """[patches, seconds] per kind of image (type, frames, encoding), one image at a time."""
    kinds: dict[str, list[float]] = {}
    for text in specs.values():
        spec = ExamSpec.from_json(text)
        for image in spec.images:
            started = time.perf_counter()
            exam = extract_exam(replace(spec, images=(image,)), settings)
            totals = kinds.setdefault(image_kind(image), [0, 0.0])
            totals[0] += len(exam.patches)
            totals[1] += time.perf_counter() - started
    return kinds


def main() -> None:
    """Prepare the cohort and its tables, extract and write every exam, print the timings."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--negatives", type=int, default=2, help="per 2D / C-view image")
    parser.add_argument("--repeats", type=int, default=3, help="passes; the fastest is shown")
    parser.add_argument("--regenerate", action="store_true")
    args = parser.parse_args()
    watch = Stopwatch()
    paths = tables(cohort(args.regenerate, watch), watch)
    inputs = SpecInputs(
        rois=paths["rois"],
        rejected=paths["rejected"],
        filtered=paths["filtered"],
        negatives_per_image=args.negatives,
        negative_choice=NegativeChoice(),
        seed=0,
        n_batches=1,
    )
    specs = watch.time("exam specifications", load_exam_specs, inputs)
    settings = PatchSettings.from_dict(SETTINGS)
    passes = [exam_pass(specs, settings) for _ in range(args.repeats)]
    best, counts = min(passes, key=lambda result: sum(result[0].seconds.values()))
    patches = counts["roi"] + counts["negative"]
    print(f"{len(specs)} exams, {patches} patches {dict(counts)}\nsettings {SETTINGS}\n")
    for stage, seconds in (watch.seconds + best.seconds).items():
        print(f"{stage:<26}{seconds:>8.2f} s")
    for stage in ("extract", "write shard"):
        print(f"{stage + ' throughput':<26}{patches / best.seconds[stage]:>8.1f} patches/s")
    print(f"{'extract + write':<26}{patches / best.seconds.total():>8.1f} patches/s\n")
    print(f"{'image kind':<60}{'patches':>8}{'s':>7}{'patches/s':>10}")
    for kind, (count, seconds) in sorted(by_image_kind(specs, settings).items()):
        print(f"{kind:<60}{count:>8}{seconds:>7.2f}{count / seconds:>10.1f}")


if __name__ == "__main__":
    main()
