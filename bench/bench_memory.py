"""Peak memory of one extraction job (embedpatch.patches.batch_job.extract_exam_shard).

Generates (once, cached in bench/out/memory/) full-size synthetic DBT volumes of
2457 x 1890 uint16 (12 bits stored), uncompressed and JPEG 2000 Lossless (one
fragment per frame), of 30 and 90 frames, and a 3328 x 2560 2D mammogram in both
encodings. Each variant runs one exam's job in a fresh Python process: 512 x 512
patches, tissue and black padding, every listed frame, the default compression.
Peak memory is the child's VmHWM (/proc/self/status) after the job, with its value
after the imports alone as the baseline: ru_maxrss from wait4 is not usable here
(subprocess spawns with vfork, and exec folds the parent's high-water mark, the
input generation, into the child's).

The bound: baseline + one decoded frame (rows x columns x 2 bytes; x ~4 while
OpenJPEG decodes, its int32 buffers) + the exam's patches (N x 512 x 512 x 2 bytes,
twice while they are stacked), whatever the number of frames in the volume.

Usage: .venv/bin/python bench/bench_memory.py [--regenerate]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

from pydicom.dataset import Dataset
from pydicom.encaps import encapsulate
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless

ROOT = Path(__file__).resolve().parent.parent

from bench_read import (  # noqa: E402
    image_dataset,
    jpeg2000_lossless,
    synthetic_frames,
    write_cached,
)
from embedpatch.config import validate_config  # noqa: E402
from embedpatch.patches.plan import extraction_settings  # noqa: E402

OUT = ROOT / "bench" / "out" / "memory"
DBT = (2457, 1890)
MAMMO = (3328, 2560)
PATCH = 512
MB = 1 << 20
# (top-left y, x) of each ROI's box (PATCH x PATCH / 2) and the frames it lists
DBT_ROIS = [((300, 200), range(4, 12)), ((1100, 900), range(10, 18)), ((1800, 400), range(20, 28))]
MAMMO_ROIS = [(400, 300), (1700, 1200)]


def native(shape: tuple[int, ...]) -> Dataset:
    ds = image_dataset(shape, ExplicitVRLittleEndian)
    frames = synthetic_frames(*shape[-2:], shape[0] if len(shape) == 3 else 1)
    ds.PixelData = b"".join(frame.tobytes() for frame in frames)
    return ds


def compressed(shape: tuple[int, ...]) -> Dataset:
    ds = image_dataset(shape, JPEG2000Lossless)
    frames = synthetic_frames(*shape[-2:], shape[0] if len(shape) == 3 else 1)
    ds.PixelData = encapsulate([jpeg2000_lossless(frame) for frame in frames])
    ds["PixelData"].VR = "OB"
    ds.LossyImageCompression = "00"
    return ds


def make_inputs(regenerate: bool) -> dict[str, Path]:
    """name -> cached DICOM file (written on first use)."""
    OUT.mkdir(parents=True, exist_ok=True)
    shapes = {"dbt30": (30, *DBT), "dbt90": (90, *DBT), "2d": MAMMO}
    inputs = {}
    for name, shape in shapes.items():
        for encoding, make in (("raw", native), ("j2k", compressed)):
            path = OUT / f"{name}_{encoding}.dcm"
            inputs[f"{name}_{encoding}"] = write_cached(
                path, lambda m=make, s=shape: m(s), regenerate
            )
    return inputs


def box(y: int, x: int) -> dict[str, int]:
    half = PATCH // 2
    return {"ymin": y, "xmin": x, "ymax": y + half, "xmax": x + half}


def image(path: Path, kind: str, rois: list[dict], negatives: int = 0) -> dict:
    return {
        "anon_dicom_path": path.name,
        "dicom_path": str(path),
        "FinalImageType": kind,
        "ImageLateralityFinal": "L",
        "ViewPosition": "CC",
        "rois": rois,
        "negatives": negatives,
        "avoid": [[r["ymin"], r["xmin"], r["ymax"], r["xmax"]] for r in rois],
    }


def dbt_exam(path: Path, frames_per_roi: int | None = None) -> dict:
    """One DBT image, three ROIs on 8 frames each (or `frames_per_roi` from frame 0)."""
    rois = []
    for index, (corner, frames) in enumerate(DBT_ROIS):
        listed = list(frames) if frames_per_roi is None else list(range(frames_per_roi))
        rois.append({"roi_index": index, **box(*corner), "frames": listed})
    return {"acc_anon": 1, "empi_anon": 1, "images": [image(path, "3D", rois)]}


def mammo_exam(*paths: Path) -> dict:
    """2D images, two ROIs and two negative windows each."""
    rois = [{"roi_index": i, **box(*corner), "frames": []} for i, corner in enumerate(MAMMO_ROIS)]
    return {"acc_anon": 2, "empi_anon": 1, "images": [image(p, "2D", rois, 2) for p in paths]}


RUNNER = """
import json
from embedpatch.patches.batch_job import extract_exam_shard
from embedpatch.patches.shards import read_shard_tables

def peak_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

baseline = peak_kb()
extract_exam_shard({spec!r}, {settings!r}, {shard!r})
print(json.dumps({{"baseline_kb": baseline, "peak_kb": peak_kb(),
                  "patches": len(read_shard_tables({shard!r}).info)}}))
"""


def run_job(spec: dict, settings: str) -> dict:
    """Baseline and peak VmHWM (MB) and patch count of one job in a fresh process."""
    shard = OUT / "shard.h5"
    code = RUNNER.format(spec=json.dumps(spec), settings=settings, shard=str(shard))
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    if result.returncode:
        raise RuntimeError(f"extraction job failed:\n{result.stderr}")
    shard.unlink()
    measured = json.loads(result.stdout)
    return {
        "baseline": measured["baseline_kb"] / 1024,
        "peak": measured["peak_kb"] / 1024,
        "patches": measured["patches"],
    }


def main() -> None:
    """Generate the inputs if needed, run every variant, print peaks and the bound."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regenerate", action="store_true")
    inputs = make_inputs(parser.parse_args().regenerate)
    settings = extraction_settings(validate_config({}))
    variants = {
        "DBT raw, 30 frames, 3 ROIs x 8 frames": dbt_exam(inputs["dbt30_raw"]),
        "DBT raw, 90 frames, 3 ROIs x 8 frames": dbt_exam(inputs["dbt90_raw"]),
        "DBT raw, 90 frames, 3 ROIs x 30 frames": dbt_exam(inputs["dbt90_raw"], 30),
        "DBT J2K, 30 frames, 3 ROIs x 8 frames": dbt_exam(inputs["dbt30_j2k"]),
        "DBT J2K, 90 frames, 3 ROIs x 8 frames": dbt_exam(inputs["dbt90_j2k"]),
        "DBT J2K, 90 frames, 3 ROIs x 30 frames": dbt_exam(inputs["dbt90_j2k"], 30),
        "2D exam: raw + J2K, 2 ROIs + 2 negatives each": mammo_exam(
            inputs["2d_raw"], inputs["2d_j2k"]
        ),
    }
    frame_mb = DBT[0] * DBT[1] * 2 / MB
    print(f"one DBT frame: {frame_mb:.1f} MB; one patch: {PATCH * PATCH * 2 / MB:.2f} MB")
    print(f"{'variant':<48} {'patches':>7} {'(MB)':>5} {'base MB':>8} {'peak MB':>8} {'job MB':>7}")
    jobs = {}
    for label, spec in variants.items():
        measured = run_job(spec, settings)
        jobs[label] = measured["peak"] - measured["baseline"]
        patches_mb = measured["patches"] * PATCH * PATCH * 2 / MB
        print(
            f"{label:<48} {measured['patches']:>7} {patches_mb:>5.0f} {measured['baseline']:>8.0f}"
            f" {measured['peak']:>8.0f} {jobs[label]:>7.0f}",
            flush=True,
        )
    for kind in ("raw", "J2K"):
        grown = jobs[f"DBT {kind}, 90 frames, 3 ROIs x 8 frames"]
        grown -= jobs[f"DBT {kind}, 30 frames, 3 ROIs x 8 frames"]
        verdict = "ok" if abs(grown) < frame_mb else "MISSED"
        print(f"DBT {kind}: 90 frames instead of 30 adds {grown:+.0f} MB (< one frame: {verdict})")


if __name__ == "__main__":
    main()
