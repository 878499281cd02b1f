"""The whole pipeline against the EMBED doc's way (bench/doc_way.py), on full-size cohorts.

Cohorts (generated once into bench/out/vs_doc/, images hard-linked between cohorts):
- `mixed-4`: one image of each kind: 3328 x 2560 2D uncompressed and JPEG 2000
  Lossless, 70 x 2457 x 1890 DBT uncompressed and JPEG 2000 Lossless (one fragment per
  frame), 12 bits stored; two ROIs each, DBT ROIs on 5 frames; one exam per image.
- `mixed-12`: three of each.
- `release-2d-12`: twelve 2D images, half of them JPEG 2000 (the public release has no
  DBT).
Each cohort runs the doc's way and the pipeline (`snakemake --cores 2`, fresh results,
the Snakefile's default target) alternately, `--repeats` times each; the table gives
medians of wall time and of peak memory (the largest single process, from
getrusage(RUSAGE_CHILDREN) of a fresh wrapper process) and their ratio, and the
pipeline's median per-rule job times (from Snakemake's metadata of the last run).

Usage: .venv/bin/python bench/bench_vs_doc.py [--cohorts mixed-4 mixed-12 release-2d-12]
       [--repeats 3] [--regenerate]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

import pandas as pd
import yaml
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

from bench_read import image_dataset, jpeg2000_lossless, synthetic_frames, write_cached
from snakemake_start import refuse_slow_start

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "vs_doc"
BIN = Path(sys.executable).parent
PREFIX = "/mnt/NAS2/mammo/anon_dicom/"
MAMMO = (3328, 2560)
DBT = (70, 2457, 1890)
KINDS = {  # name: (shape, transfer syntax)
    "2d_raw": (MAMMO, ExplicitVRLittleEndian),
    "2d_j2k": (MAMMO, JPEG2000Lossless),
    "dbt_raw": (DBT, ExplicitVRLittleEndian),
    "dbt_j2k": (DBT, JPEG2000Lossless),
}
COHORTS = {
    "mixed-4": ["2d_raw", "2d_j2k", "dbt_raw", "dbt_j2k"],
    "mixed-12": ["2d_raw", "2d_j2k", "dbt_raw", "dbt_j2k"] * 3,
    "release-2d-12": ["2d_raw", "2d_j2k"] * 6,
}
BOXES = [[900, 600, 1300, 1000], [1700, 300, 1950, 620]]  # on the phantom's tissue
FRAMES = [[30, 31, 32, 33, 34], [40, 41, 42, 43, 44]]
MEASURE = """
import json, resource, subprocess, sys, time
started = time.perf_counter()
done = subprocess.run(sys.argv[2:], cwd=sys.argv[1], capture_output=True, text=True)
wall = time.perf_counter() - started
if done.returncode:
    sys.exit(done.stdout[-2000:] + done.stderr[-4000:])
peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
print(json.dumps({"wall_s": wall, "peak_mb": peak}))
"""


def base_image(kind: str, regenerate: bool) -> Path:
    """One full-size image of `kind`, written once."""
    shape, syntax = KINDS[kind]
    (OUT / "base").mkdir(parents=True, exist_ok=True)

    def make():
        ds = image_dataset(shape, syntax)
        frames = synthetic_frames(*shape[-2:], shape[0] if len(shape) == 3 else 1)
        if syntax == JPEG2000Lossless:
            ds.PixelData = encapsulate([jpeg2000_lossless(frame) for frame in frames])
            ds["PixelData"].VR = "OB"
            ds.LossyImageCompression = "00"
        else:
            ds.PixelData = b"".join(frame.tobytes() for frame in frames)
        ds.ImageLaterality, ds.ViewPosition, ds.PatientOrientation = "L", "CC", ["A", "R"]
        return ds

    return write_cached(OUT / "base" / f"{kind}.dcm", make, regenerate)


def make_cohort(name: str, regenerate: bool) -> Path:
    """The cohort's folder: images/ (hard links to the base images) and metadata.csv."""
    folder = OUT / name
    rows = []
    for index, kind in enumerate(COHORTS[name]):
        is_dbt = kind.startswith("dbt")
        relative = f"cohort_1/{10_000_000 + index}/1.2.3.{index}/1.2.3.{index}.1/{kind}.dcm"
        target = folder / "images" / relative
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(base_image(kind, regenerate), target)
        rows.append(
            {
                "empi_anon": 10_000_000 + index,
                "acc_anon": 1_000_000_000_000_000 + index,
                "FinalImageType": "3D" if is_dbt else "2D",
                "ImageLateralityFinal": "L",
                "ViewPosition": "CC",
                "spot_mag": None,
                "num_ROI": 2,
                "ROI_coords": str(BOXES),
                "ROI_frames": str(FRAMES) if is_dbt else "[]",
                "anon_dicom_path": PREFIX + relative,
                "Rows": KINDS[kind][0][-2],
                "Columns": KINDS[kind][0][-1],
                "ImagesInAcquisition": DBT[0] if is_dbt else 1,
            }
        )
    pd.DataFrame(rows).to_csv(folder / "metadata.csv", index=False)
    config = {
        "metadata": str(folder / "metadata.csv"),
        "dicom_root": str(folder / "images"),
        "path_rewrite": [{"from": PREFIX, "to": f"{folder / 'images'}/"}],
    }
    (folder / "config.yaml").write_text(yaml.safe_dump(config))
    return folder


def measured(command: list[str], cwd: Path) -> dict:
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, str(cwd), *command], capture_output=True, text=True
    )
    if done.returncode:
        raise SystemExit(f"{' '.join(command)} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def rule_times(workdir: Path) -> dict[str, float]:
    """Seconds each rule's jobs took in the last run, from Snakemake's metadata."""
    jobs = {}
    for record in (workdir / ".snakemake" / "metadata").iterdir():
        data = json.loads(record.read_text())
        if data.get("starttime") and data.get("endtime"):
            jobs[(data["rule"], round(data["starttime"], 2))] = data["endtime"] - data["starttime"]
    times = collections.defaultdict(float)
    for (rule, _), seconds in jobs.items():
        times[rule] += seconds
    return dict(times)


def run_doc(folder: Path) -> dict:
    out = folder / "doc_out"
    shutil.rmtree(out, ignore_errors=True)
    command = [sys.executable, str(ROOT / "bench" / "doc_way.py"), "metadata.csv", "images"]
    return measured([*command, PREFIX, str(out)], folder)


def run_pipeline(folder: Path) -> dict:
    work = folder / "pipeline"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir()
    command = [str(BIN / "snakemake"), "--snakefile", str(ROOT / "Snakefile"), "--cores", "2"]
    result = measured([*command, "--configfile", str(folder / "config.yaml"), "-q"], work)
    result["rules"] = rule_times(work)
    return result


def bench_cohort(name: str, repeats: int, regenerate: bool) -> dict:
    folder = make_cohort(name, regenerate)
    runs = {"doc": [], "pipeline": []}
    for repeat in range(repeats):
        order = ("doc", "pipeline") if repeat % 2 == 0 else ("pipeline", "doc")
        for way in order:
            runs[way].append(run_doc(folder) if way == "doc" else run_pipeline(folder))
            print(f"{name} {way} run {repeat + 1}: {runs[way][-1]['wall_s']:.1f} s", flush=True)
    summary = {
        way: {key: statistics.median(run[key] for run in values) for key in ("wall_s", "peak_mb")}
        for way, values in runs.items()
    }
    rules = collections.defaultdict(list)
    for run in runs["pipeline"]:
        for rule, seconds in run["rules"].items():
            rules[rule].append(seconds)
    summary["rules"] = {rule: statistics.median(times) for rule, times in rules.items()}
    return summary


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cohorts", nargs="+", default=list(COHORTS), choices=list(COHORTS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--regenerate", action="store_true")
    arguments = parser.parse_args()
    refuse_slow_start()
    results = {
        name: bench_cohort(name, arguments.repeats, arguments.regenerate)
        for name in arguments.cohorts
    }
    (OUT / "bench.json").write_text(json.dumps(results, indent=1))
    print("\n| cohort | doc's way: wall / peak | pipeline: wall / peak | speed-up |")
    print("|---|---|---|---|")
    for name, summary in results.items():
        doc, ours = summary["doc"], summary["pipeline"]
        print(
            f"| {name} | {doc['wall_s']:.1f} s / {doc['peak_mb']:.0f} MB "
            f"| {ours['wall_s']:.1f} s / {ours['peak_mb']:.0f} MB "
            f"| {doc['wall_s'] / ours['wall_s']:.2f}x |"
        )
    for name, summary in results.items():
        ranked = sorted(summary["rules"].items(), key=lambda item: -item[1])
        print(
            f"\n{name}, pipeline job seconds by rule (median): "
            + ", ".join(f"{rule} {seconds:.1f}" for rule, seconds in ranked)
        )


if __name__ == "__main__":
    main()
