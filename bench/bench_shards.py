"""Benchmark shard compression: write time, size, random and sequential reads per codec.

Data: 512 x 512 windows centred on breast tissue of full-size (3328 x 2560) 12-bit
phantom mammograms with lesions (embedpatch.demo.phantom), as uint16: what ROI and
negative patches look like. Every codec in shards.COMPRESSIONS writes the same
patches with `write_shard` (one patch per chunk), then the file is read back with
h5py: random single patches (file opened once) and every patch in order. Reads run
on a warm page cache (the file was just written), so they measure decompression,
not the disk. Single-threaded codecs (Blosc uses one thread unless BLOSC_NTHREADS).

Usage: .venv/bin/python bench/bench_shards.py [--patches N] [--random-reads N]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import h5py
import numpy as np

from embedpatch.demo import phantom
from embedpatch.patches.extract import (
    INFO_COLUMNS,
    INFO_INT_COLUMNS,
    REJECTION_COLUMNS,
    REJECTION_INT_COLUMNS,
    typed_table,
)
from embedpatch.patches.shards import (
    COMPRESSIONS,
    DEFAULT_COMPRESSION,
    ExamPatches,
    read_shard,
    write_shard,
)

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "shards"
SIZE = 512
IMAGE = (3328, 2560)
PATCHES_PER_IMAGE = 250


def phantom_patches(count: int, seed: int = 0) -> np.ndarray:
    """`count` tissue-centred SIZE x SIZE windows from as many phantoms as needed."""
    rng = np.random.default_rng(seed)
    patches = []
    while len(patches) < count:
        shape = phantom.BreastShape.random(rng, *IMAGE, "MLO", bool(rng.random() < 0.5))
        lesions = [
            phantom.Lesion(shape.inner_box(rng), float(rng.uniform(*phantom.LESION_AMPLITUDE)))
            for _ in range(3)
        ]
        image = phantom.render_2d(shape, lesions, rng)
        ys, xs = np.nonzero(image[::16, ::16])
        for pick in rng.choice(len(ys), min(PATCHES_PER_IMAGE, count - len(patches))):
            y0 = int(np.clip(ys[pick] * 16 - SIZE // 2, 0, IMAGE[0] - SIZE))
            x0 = int(np.clip(xs[pick] * 16 - SIZE // 2, 0, IMAGE[1] - SIZE))
            patches.append(image[y0 : y0 + SIZE, x0 : x0 + SIZE])
    return np.stack(patches)


def exam_of(patches: np.ndarray) -> ExamPatches:
    """The patches as an exam with plausible info rows (strings and ints)."""
    record = {
        "empi_anon": 12345678,
        "acc_anon": 1234567890123456,
        "anon_dicom_path": "/mnt/NAS2/mammo/anon_dicom/cohort_1/12345678/1.2.3/4.5.6/7.8.9.dcm",
        "FinalImageType": "2D",
        "ImageLateralityFinal": "L",
        "ViewPosition": "MLO",
        "roi_index": 0,
        "frame": -1,
        **{"ymin": 0, "xmin": 0, "ymax": SIZE, "xmax": SIZE, "patch_y0": 0, "patch_x0": 0},
        "patch_size": SIZE,
        "padding": "tissue",
        "label": "roi",
    }
    records = [{**record, "index": index} for index in range(len(patches))]
    return ExamPatches(
        acc_anon=record["acc_anon"],
        empi_anon=record["empi_anon"],
        patches=patches,
        info=typed_table(records, INFO_COLUMNS, INFO_INT_COLUMNS),
        rejections=typed_table([], REJECTION_COLUMNS, REJECTION_INT_COLUMNS),
    )


def measure(name: str, exam: ExamPatches, random_reads: int) -> dict[str, float]:
    """Write, size and read figures of one codec."""
    path = OUT / f"{name}.h5"
    started = time.perf_counter()
    write_shard(path, exam, {"config_hash": "bench", "config": {}}, name)
    written = time.perf_counter() - started
    raw = exam.patches.nbytes
    order = np.random.default_rng(1).integers(len(exam.patches), size=random_reads)
    with h5py.File(path, "r") as file:
        patches = file["patches"]
        started = time.perf_counter()
        for index in order:
            patches[index]
        random_ms = (time.perf_counter() - started) / random_reads * 1e3
        started = time.perf_counter()
        for index in range(len(patches)):
            patches[index]
        sequential = time.perf_counter() - started
    np.testing.assert_array_equal(read_shard(path).patches, exam.patches)
    return {
        "write_s": written,
        "ratio": raw / path.stat().st_size,
        "size_mb": path.stat().st_size / 1e6,
        "random_ms": random_ms,
        "sequential_mb_s": raw / 1e6 / sequential,
    }


def main() -> None:
    """Generate the patches, measure every codec, print the comparison."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=1000)
    parser.add_argument("--random-reads", type=int, default=300)
    args = parser.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    exam = exam_of(phantom_patches(args.patches))
    raw_mb = exam.patches.nbytes / 1e6
    print(
        f"{len(exam.patches)} patches {SIZE} x {SIZE} uint16 (12 bits), {raw_mb:.0f} MB raw, "
        f"made in {time.perf_counter() - started:.0f} s"
    )
    header = (
        f"{'compression':<23}{'write s':>9}{'write MB/s':>12}{'ratio':>7}{'MB':>7}"
        f"{'random ms/patch':>17}{'sequential MB/s':>17}"
    )
    print(header)
    for name in COMPRESSIONS:
        result = measure(name, exam, args.random_reads)
        print(
            f"{name:<23}{result['write_s']:>9.2f}{raw_mb / result['write_s']:>12.0f}"
            f"{result['ratio']:>7.2f}{result['size_mb']:>7.0f}{result['random_ms']:>17.2f}"
            f"{result['sequential_mb_s']:>17.0f}",
            flush=True,
        )
        (OUT / f"{name}.h5").unlink()
    print(f"default: {DEFAULT_COMPRESSION}")


if __name__ == "__main__":
    main()
