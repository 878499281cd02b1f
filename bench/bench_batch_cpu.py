"""CPU per image of extraction batches (patches.batch_job.extract_batch), without Snakemake.

Runs the first N batches of a scale cohort (bench/bench_scale.py must have run on it:
it reads that run's stage-2 tables) into a temporary folder, three times, and prints
the best CPU time per image; --profile adds where it goes (cProfile, cumulative).
The images are 64 x 64 with few ROIs, so almost all of it is not decoding.

  .venv/bin/python bench/bench_batch_cpu.py [--size 1000] [--batches 60] [--profile]

To measure another version of the library on the same batches, write the batches'
specifications with this version once (--write-specs FILE), then run this script
from a worktree of that version, with its own virtual env, on them (--specs FILE):
  git worktree add /tmp/base <commit> && make -C /tmp/base .venv/.dev-deps
  /tmp/base/.venv/bin/python bench/bench_batch_cpu.py --specs FILE
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "bench" / "out" / "batch_cpu" / "specs.json"


def write_specs(size: int, target: Path) -> None:
    """The batches of the scale cohort's run, with their settings, to `target`."""
    from embedpatch.config import validate_config
    from embedpatch.patches.plan import (
        SpecInputs,
        extraction_settings,
        load_exam_specs,
        run_layout,
    )

    work = ROOT / "bench" / "out" / "scale" / str(size) / "batched"
    config = validate_config(yaml.safe_load((work / "config.yaml").read_text()))
    results = work / "results"
    inputs = SpecInputs.from_config(
        config,
        str(results / "rois/rois.parquet"),
        str(results / "rois/validation_rejected.parquet"),
        str(results / "metadata/filtered.parquet"),
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    specs = load_exam_specs(inputs)
    data = {
        "batches": run_layout(inputs, specs, results / "patches/layout.json").group(specs),
        "settings": extraction_settings(config),
    }
    target.write_text(json.dumps(data))


def run_batches(data: dict, names: list[str], folder: Path) -> float:
    """CPU seconds of extracting `names` into an empty `folder`."""
    from embedpatch.patches.batch_job import extract_batch

    for shard in folder.glob("*.h5"):
        shard.unlink()
    start = time.process_time()
    for name in names:
        records = folder / "batches"
        extract_batch(
            data["batches"][name],
            data["settings"],
            str(folder),
            str(records / f"{name}.json"),
            str(records / f"{name}.parquet"),
        )
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1000, help="scale cohort (exams)")
    parser.add_argument("--batches", type=int, default=60)
    parser.add_argument("--specs", type=Path, help="read the batches from this file")
    parser.add_argument("--write-specs", type=Path, help="write the batches here, then stop")
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    if args.write_specs:
        write_specs(args.size, args.write_specs)
        return
    if args.specs is None:
        write_specs(args.size, SPECS)
    data = json.loads((args.specs or SPECS).read_text())
    names = sorted(data["batches"])[: args.batches]
    images = sum(
        len(json.loads(spec)["images"]) for name in names for spec in data["batches"][name].values()
    )
    exams = sum(len(data["batches"][name]) for name in names)
    folder = Path(tempfile.mkdtemp(prefix="batch_cpu_"))
    best = min(run_batches(data, names, folder) for _ in range(3))
    import embedpatch

    print(f"library: {Path(embedpatch.__file__).parent}")
    print(f"{len(names)} batches, {exams} exams, {images} images: best of 3 {best:.2f} s CPU, "
          f"{1000 * best / images:.1f} ms per image")  # fmt: skip
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(run_batches, data, names, folder)
        text = io.StringIO()
        pstats.Stats(profile, stream=text).sort_stats("cumulative").print_stats(r"embedpatch", 25)
        print(text.getvalue())


if __name__ == "__main__":
    main()
