"""Benchmark the combined file both ways: the index read through verified shards (what
`combine_shards` writes now) against an HDF5 virtual dataset over the same shards (what
it wrote before 0.3), at 1,000 and 50,000 shards.

Data: one shard of `--per-shard` random 64 x 64 uint16 patches written with
`write_shard` (default compression), copied to every exam's name, and their manifest;
cached in bench/out/combined. Small patches on purpose: what differs between the two
ways is the cost per shard (opening, checking), not decompression. Warm page cache.

Measured: building the file; opening it (the VDS: plain, and with the check the old
`open_combined` made, every source listed and looked up); random single-patch reads of
`--random-reads` rows, the index with its default cache of 64 open shards and with
every shard read kept open (second pass), the VDS with every source it read
kept open by HDF5.

Usage: .venv/bin/python bench/bench_combined.py [--shards 1000 50000] [--random-reads N]
"""

from __future__ import annotations

import argparse
import resource
import shutil
import time
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pandas as pd

from embedpatch.patches.extract import REJECTION_COLUMNS, REJECTION_INT_COLUMNS
from embedpatch.patches.shards import (
    INFO_COLUMNS,
    INFO_INT_COLUMNS,
    ExamPatches,
    read_shard_tables,
    typed_table,
    write_shard,
)
from embedpatch.training.combined import combine_shards, open_combined
from embedpatch.vocab import BOX_COLUMNS

OUT = Path(__file__).parent / "out" / "combined"
SIZE = 64


def template_shard(path: Path, per_shard: int) -> None:
    rng = np.random.default_rng(0)
    records = [
        {"index": index, "empi_anon": 1, "acc_anon": 1, "anon_dicom_path": "x.dcm",
         "FinalImageType": "2D", "ImageLateralityFinal": "L", "ViewPosition": "CC",
         "roi_index": index, "frame": -1, "patch_size": SIZE, "padding": "tissue",
         "label": "roi", "patch_y0": 0, "patch_x0": 0, **dict.fromkeys(BOX_COLUMNS, 0)}
        for index in range(per_shard)
    ]  # fmt: skip
    exam = ExamPatches(
        acc_anon=1,
        empi_anon=1,
        patches=rng.integers(0, 4096, (per_shard, SIZE, SIZE)).astype(np.uint16),
        info=typed_table(records, INFO_COLUMNS, INFO_INT_COLUMNS),
        rejections=typed_table([], REJECTION_COLUMNS, REJECTION_INT_COLUMNS),
    )
    write_shard(path, exam, {"config_hash": "bench", "config": {}})


def build(folder: Path, n_shards: int, per_shard: int) -> None:
    """n_shards copies of one shard under folder/patches, and their manifest."""
    if (folder / "manifest.parquet").is_file():
        return
    shutil.rmtree(folder, ignore_errors=True)
    (folder / "patches").mkdir(parents=True)
    template = folder / "template.h5"
    template_shard(template, per_shard)
    names = [f"patches/{1_000_000 + number}.h5" for number in range(n_shards)]
    for name in names:
        shutil.copyfile(template, folder / name)
    info = read_shard_tables(template).info
    manifest = pd.concat([info] * n_shards, ignore_index=True)
    manifest.insert(0, "shard", pd.array(np.repeat(names, per_shard), dtype="str"))
    manifest.to_parquet(folder / "manifest.parquet", index=False)


def build_vds(folder: Path, n_shards: int, per_shard: int) -> Path:
    """The virtual dataset over the same shards, as combine_shards wrote it before 0.3."""
    manifest = pd.read_parquet(folder / "manifest.parquet", columns=["shard"])
    names = manifest["shard"].unique()
    layout = h5py.VirtualLayout((n_shards * per_shard, SIZE, SIZE), np.uint16)
    for number, name in enumerate(names):
        start = number * per_shard
        layout[start : start + per_shard] = h5py.VirtualSource(
            name, "patches", shape=(per_shard, SIZE, SIZE), dtype=np.uint16
        )
    path = folder / "vds.h5"
    with h5py.File(path, "w", locking=False) as file:
        file.create_virtual_dataset("patches", layout)
    return path


def seconds(action: Callable[[], object]) -> tuple[float, object]:
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def vds_open_checked(path: Path) -> h5py.File:
    """The VDS opened as the old open_combined did: every source must exist."""
    file = h5py.File(path, "r", rdcc_nbytes=0)
    folder = path.parent
    names = {source.file_name for source in file["patches"].virtual_sources()}
    missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise FileNotFoundError(missing[0])
    return file


def random_reads(patches: object, rows: np.ndarray) -> float:
    started = time.perf_counter()
    for row in rows:
        patches[int(row)]
    return (time.perf_counter() - started) / len(rows) * 1000


def measure(n_shards: int, per_shard: int, n_reads: int) -> list[tuple[str, str]]:
    folder = OUT / f"{n_shards}"
    build(folder, n_shards, per_shard)
    index_path = folder / "patches_combined.h5"
    rows = np.random.default_rng(1).integers(0, n_shards * per_shard, n_reads)
    built, _ = seconds(lambda: combine_shards(str(folder / "manifest.parquet"), str(index_path)))
    vds_built, _ = seconds(lambda: build_vds(folder, n_shards, per_shard))
    opened, file = seconds(lambda: open_combined(index_path))
    result = [
        ("build: index (combine_shards, 64 shards opened)", f"{built:.2f} s"),
        ("build: virtual dataset", f"{vds_built:.2f} s"),
        ("open: index (open_combined)", f"{opened * 1000:.1f} ms"),
    ]
    with file:
        result.append(
            ("random read: index, 64 shards open", f"{random_reads(file['patches'], rows):.3f} ms")
        )
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    cache = min(n_shards, hard - 100)  # holds every shard the reads touch (<= n_reads)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, cache + 100), hard))
    with open_combined(index_path, cache_size=cache) as file:
        patches = file["patches"]
        random_reads(patches, rows)  # every shard the rows touch, opened
        ms = random_reads(patches, rows)
    result.append(("random read: index, every shard read kept open", f"{ms:.3f} ms"))
    vds_plain, file = seconds(lambda: h5py.File(folder / "vds.h5", "r", rdcc_nbytes=0))
    file.close()
    vds_checked, file = seconds(lambda: vds_open_checked(folder / "vds.h5"))
    with file:
        ms = random_reads(file["patches"], rows)
    result += [
        ("open: virtual dataset, plain h5py", f"{vds_plain * 1000:.1f} ms"),
        ("open: virtual dataset, every source looked up", f"{vds_checked * 1000:.1f} ms"),
        ("random read: virtual dataset (HDF5 keeps each source open)", f"{ms:.3f} ms"),
    ]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shards", type=int, nargs="+", default=[1000, 50000])
    parser.add_argument("--per-shard", type=int, default=4)
    parser.add_argument("--random-reads", type=int, default=2000)
    args = parser.parse_args()
    table = {n: dict(measure(n, args.per_shard, args.random_reads)) for n in args.shards}
    header = "| | " + " | ".join(f"{n:,} shards" for n in args.shards) + " |"
    print(header)
    print("|---" * (len(args.shards) + 1) + "|")
    for what in table[args.shards[0]]:
        cells = " | ".join(table[n].get(what, "n/a") for n in args.shards)
        print(f"| {what} | {cells} |")


if __name__ == "__main__":
    main()
