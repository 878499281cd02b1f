"""Benchmark pixel reading: ImageReader against the EMBED doc's whole-volume decode.

Generates (once, cached in bench/out/read/) full-size synthetic images: a DBT of 64
frames of 2457 x 1890 uint16 (12 bits stored) uncompressed and JPEG 2000 Lossless
(one fragment per frame), and a 3328 x 2560 2D mammogram. Task: one 512 x 512 ROI
patch on 5 consecutive DBT frames; 2D: the whole image. Each variant runs in its
own Python process: wall time is the best of a few warm-cache runs inside it (open
and header parse included); peak memory is that process's VmHWM after the first run
(one execution of the task; later runs only add allocator fragmentation). Not
ru_maxrss from wait4: subprocess spawns with vfork, and exec folds the parent's
high-water mark, here the 1.2 GB of input generation, into the child's ru_maxrss.

Usage: .venv/bin/python bench/bench_read.py [--regenerate]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_encoder
from pydicom.uid import ExplicitVRLittleEndian, JPEG2000Lossless, generate_uid

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "read"
DBT_SHAPE = (64, 2457, 1890)
MAMMO_SHAPE = (3328, 2560)
BITS_STORED = 12
PATCH = 512
ROI_Y, ROI_X = 980, 700  # top-left of the patch
FRAMES = list(range(30, 35))
SOP_CLASS = {2: "1.2.840.10008.5.1.4.1.1.1.2", 3: "1.2.840.10008.5.1.4.1.1.13.1.3"}


def synthetic_frames(rows: int, columns: int, count: int, seed: int = 0) -> Iterator[np.ndarray]:
    """Breast-like 12-bit frames: a bright half-ellipse with texture, slice drift and noise."""
    rng = np.random.default_rng(seed)
    y, x = np.ogrid[:rows, :columns]
    inside = (x / (0.8 * columns)) ** 2 + ((y - rows / 2) / (0.45 * rows)) ** 2 < 1
    texture = 600 * np.sin(x / 37.0) * np.cos(y / 53.0)
    for index in range(count):
        drift = 150 * np.sin(index / 5 + x / 91.0) * np.cos(y / 67.0)
        tissue = np.where(inside, 1800 + texture + drift, 80)
        noisy = tissue + rng.normal(0, 40, (rows, columns))
        yield noisy.clip(0, (1 << BITS_STORED) - 1).astype(np.uint16)


def image_dataset(shape: tuple[int, ...], syntax: str) -> Dataset:
    """A DICOM dataset with the image pixel module of `shape`, Pixel Data still to set."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = syntax
    ds.SOPClassUID = SOP_CLASS[len(shape)]
    ds.SOPInstanceUID = generate_uid()
    ds.Rows, ds.Columns = shape[-2:]
    if len(shape) == 3:
        ds.NumberOfFrames = shape[0]
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, BITS_STORED, BITS_STORED - 1
    ds.PixelRepresentation = 0
    ds.WindowCenter, ds.WindowWidth = 2048, 4096
    return ds


def jpeg2000_lossless(frame: np.ndarray) -> bytes:
    rows, columns = frame.shape
    return get_encoder(JPEG2000Lossless).encode(
        frame,
        rows=rows,
        columns=columns,
        samples_per_pixel=1,
        bits_allocated=16,
        bits_stored=BITS_STORED,
        pixel_representation=0,
        photometric_interpretation="MONOCHROME2",
        number_of_frames=1,
    )


def write_cached(path: Path, make: Callable[[], Dataset], regenerate: bool) -> Path:
    """Write the dataset `make()` returns to `path` unless it is already there."""
    if path.exists() and not regenerate:
        return path
    started = time.perf_counter()
    temporary = path.with_suffix(".partial")
    make().save_as(temporary, enforce_file_format=True)
    temporary.replace(path)
    print(f"generated {path.name} in {time.perf_counter() - started:.0f} s", flush=True)
    return path


def make_inputs(regenerate: bool) -> dict[str, Path]:
    OUT.mkdir(parents=True, exist_ok=True)

    def native(shape: tuple[int, ...]) -> Dataset:
        ds = image_dataset(shape, ExplicitVRLittleEndian)
        frames = synthetic_frames(*shape[-2:], shape[0] if len(shape) == 3 else 1)
        ds.PixelData = b"".join(frame.tobytes() for frame in frames)
        return ds

    def compressed() -> Dataset:
        ds = image_dataset(DBT_SHAPE, JPEG2000Lossless)
        frames = synthetic_frames(*DBT_SHAPE[1:], DBT_SHAPE[0])
        ds.PixelData = encapsulate([jpeg2000_lossless(frame) for frame in frames])
        ds["PixelData"].VR = "OB"
        ds.LossyImageCompression = "00"
        return ds

    return {
        "dbt_native": write_cached(OUT / "dbt_native.dcm", lambda: native(DBT_SHAPE), regenerate),
        "dbt_j2k": write_cached(OUT / "dbt_j2k_lossless.dcm", compressed, regenerate),
        "mammo_2d": write_cached(OUT / "mammo_2d.dcm", lambda: native(MAMMO_SHAPE), regenerate),
    }


WINDOW = f"{ROI_Y}, {ROI_Y + PATCH}, {ROI_X}, {ROI_X + PATCH}"
SLICE = f"{ROI_Y}:{ROI_Y + PATCH}, {ROI_X}:{ROI_X + PATCH}"
SETUP = """
from pathlib import Path
import pydicom, pydicom.pixels
from embedpatch.dicom import ImageReader
"""
TASKS = {
    "ours": (
        "with ImageReader({path!r}) as reader:\n"
        f"    [reader.region(f, {WINDOW}) for f in {FRAMES}]"
    ),
    "doc": (
        "volume = pydicom.pixels.pixel_array({path!r})\n"
        f"[volume[f, {SLICE}].copy() for f in {FRAMES}]"
    ),
    "iter_pixels": (
        f"frames = pydicom.pixels.iter_pixels({{path!r}}, indices={FRAMES})\n"
        f"[frame[{SLICE}].copy() for frame in frames]"
    ),
    "qc_view": "ImageReader({path!r}).downsampled(32, 8)",
    "frame": "with ImageReader({path!r}) as reader:\n    reader.frame(0)",
    "read_bytes": "Path({path!r}).read_bytes()",
    "dcmread": "pydicom.dcmread({path!r}).pixel_array",
    "imports": "pass",
}
RUNNER = """
import json, time
{setup}
def task():
{body}

def peak_kb():
    with open("/proc/self/status") as status:
        return next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))

times = []
for run in range({repeats}):
    started = time.perf_counter()
    task()
    times.append(time.perf_counter() - started)
    first_peak_kb = first_peak_kb if run else peak_kb()
print(json.dumps({{"times": times, "peak_kb": first_peak_kb}}))
"""


def run_measured(task: str, path: Path, repeats: int) -> tuple[float, float]:
    """Best warm wall seconds of `task` and peak RSS (MB) of a fresh Python process."""
    body = "\n".join("    " + line for line in TASKS[task].format(path=str(path)).splitlines())
    code = RUNNER.format(setup=SETUP, body=body, repeats=repeats)
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False
    )
    if result.returncode:
        raise RuntimeError(f"benchmark task {task} on {path.name} failed:\n{result.stderr}")
    measured = json.loads(result.stdout)
    return min(measured["times"]), measured["peak_kb"] / 1024


# (label, task, input, repeats)
VARIANTS = [
    ("baseline: imports only", "imports", "mammo_2d", 1),
    ("DBT raw: ours, ImageReader.region", "ours", "dbt_native", 10),
    ("DBT raw: pydicom iter_pixels(indices)", "iter_pixels", "dbt_native", 5),
    ("DBT raw: doc, pixel_array(volume)", "doc", "dbt_native", 3),
    ("DBT J2K: ours, ImageReader.region", "ours", "dbt_j2k", 5),
    ("DBT J2K: pydicom iter_pixels(indices)", "iter_pixels", "dbt_j2k", 2),
    ("DBT J2K: doc, pixel_array(volume)", "doc", "dbt_j2k", 2),
    ("DBT raw: ours, downsampled x8", "qc_view", "dbt_native", 10),
    ("DBT J2K: ours, downsampled x8", "qc_view", "dbt_j2k", 10),
    ("2D raw: ours, ImageReader.frame", "frame", "mammo_2d", 100),
    ("2D raw: Path.read_bytes", "read_bytes", "mammo_2d", 100),
    ("2D raw: dcmread().pixel_array", "dcmread", "mammo_2d", 10),
]


def verdict(name: str, value: float, target: float, at_least: bool) -> str:
    ok = value >= target if at_least else value <= target
    sign = ">=" if at_least else "<="
    return f"{name:<44} {value:>8.2f}  (target {sign} {target:g}: {'ok' if ok else 'MISSED'})"


def main() -> None:
    """Generate the inputs if needed, run every variant, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--regenerate", action="store_true")
    inputs = make_inputs(parser.parse_args().regenerate)
    for name, path in inputs.items():
        print(f"input {name}: {path.stat().st_size / 1e6:.0f} MB")
    print(f"task: {PATCH} x {PATCH} patch at ({ROI_Y}, {ROI_X}) on frames {FRAMES}")
    print(f"{'variant':<44} {'best s':>9} {'peak RSS MB':>12}")
    results = {}
    for label, task, name, repeats in VARIANTS:
        results[label] = run_measured(task, inputs[name], repeats)
        print(f"{label:<44} {results[label][0]:>9.4f} {results[label][1]:>12.0f}", flush=True)
    time_of = {label: seconds for label, (seconds, _) in results.items()}
    memory_of = {label: peak for label, (_, peak) in results.items()}
    print()
    for kind, target in (("raw", 30), ("J2K", 10)):
        ours = f"DBT {kind}: ours, ImageReader.region"
        doc = f"DBT {kind}: doc, pixel_array(volume)"
        speedup = time_of[doc] / time_of[ours]
        print(verdict(f"DBT {kind}: speed-up over the doc", speedup, target, True))
        memory = memory_of[ours] / memory_of[doc]
        print(verdict(f"DBT {kind}: peak memory ours / doc", memory, 0.2, False))
    ratio = time_of["2D raw: ours, ImageReader.frame"] / time_of["2D raw: Path.read_bytes"]
    print(verdict("2D: ours / reading the file's bytes", ratio, 1.5, False))


if __name__ == "__main__":
    main()
