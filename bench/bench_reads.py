"""Benchmark reading patches for training: PatchDataset, the combined file, DataLoader.

Data: `--patches` 512 x 512 uint16 windows of full-size 12-bit phantom mammograms
(bench_shards.phantom_patches), `--per-shard` to an exam shard, written with
`write_shard` and the default compression (Blosc zstd + bit shuffle), then the
manifest (`manifest_from_batch_tables`, of one batch table) and the combined file
(`combine_shards`) as the pipeline writes them; cached in bench/out/reads. Reads run
on a warm page cache (files just written or read), so they measure HDF5 and the codec,
not the disk.

Measured, with the growth of resident memory: random single-patch reads (a random
permutation) and sequential reads (manifest order) through PatchDataset, with the
default cache of open shards and with every shard kept open; the same through the
combined file (`open_combined`), plus 64-patch slices; one shuffled epoch of a torch
DataLoader (batch 32) at num_workers 0 and 2.

Usage: .venv/bin/python bench/bench_reads.py [--patches N] [--per-shard N] [--random-reads N]
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

ROOT = Path(__file__).resolve().parent.parent

from bench_shards import SIZE, exam_of, phantom_patches  # noqa: E402
from embedpatch.patches.manifest import manifest_from_batch_tables, read_shards  # noqa: E402
from embedpatch.patches.shards import DEFAULT_COMPRESSION, write_shard  # noqa: E402
from embedpatch.training.combined import combine_shards, open_combined  # noqa: E402
from embedpatch.training.dataset import DEFAULT_CACHE_SIZE, PatchDataset, as_torch  # noqa: E402

OUT = ROOT / "bench" / "out" / "reads"
RESULTS = OUT / "results"
PATCH_MB = SIZE * SIZE * 2 / 1e6


def build_results(n_patches: int, per_shard: int) -> None:
    """Shards of `per_shard` phantom patches each, their manifest and the combined file."""
    patches = phantom_patches(n_patches)
    shards = []
    for number, start in enumerate(range(0, n_patches, per_shard)):
        exam = exam_of(patches[start : start + per_shard])
        acc, empi = 1_000_000_000_000_000 + number, 10_000_000 + number // 2
        info = exam.info.assign(acc_anon=acc, empi_anon=empi)
        exam = dataclasses.replace(exam, acc_anon=acc, empi_anon=empi, info=info)
        shards.append(RESULTS / "patches" / f"{acc}.h5")
        write_shard(shards[-1], exam, {"config_hash": "bench", "config": {}}, DEFAULT_COMPRESSION)
    filtered = OUT / "filtered.parquet"  # no clinical labels to join
    pd.DataFrame({"anon_dicom_path": pd.Series([], dtype="string")}).to_parquet(filtered)
    table = RESULTS / "patches" / "batches" / "b0.parquet"  # as an extraction batch writes it
    table.parent.mkdir(parents=True, exist_ok=True)
    read_shards([str(shard) for shard in shards])[0].to_parquet(table, index=False)
    manifest = manifest_from_batch_tables([str(table)], str(RESULTS), str(filtered))
    manifest.to_parquet(RESULTS / "manifest.parquet", index=False)
    combine_shards(str(RESULTS / "manifest.parquet"), str(RESULTS / "patches_combined.h5"))


def rss_mb() -> float:
    """This process's resident memory."""
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGESIZE") / 1e6


def timed(read: Callable[[int], object], positions: Iterable[int]) -> tuple[int, float, float]:
    """How many reads, the seconds they took, and the growth of resident memory (MB)."""
    positions = list(positions)
    memory, started = rss_mb(), time.perf_counter()
    for position in positions:
        read(position)
    return len(positions), time.perf_counter() - started, rss_mb() - memory


def loader_epoch(dataset: PatchDataset, num_workers: int) -> tuple[int, float, float]:
    """Patches and seconds of one shuffled epoch (batch 32), worker start-up included."""
    loader = torch.utils.data.DataLoader(
        as_torch(dataset, columns=["index"]), batch_size=32, shuffle=True, num_workers=num_workers
    )
    memory, started = rss_mb(), time.perf_counter()
    count = sum(len(patches) for patches, _ in loader)
    return count, time.perf_counter() - started, rss_mb() - memory


Row = tuple[str, int, float, float]  # what, patches, seconds, resident memory growth (MB)


def dataset_rows(shuffled: np.ndarray, n_shards: int) -> list[Row]:
    """PatchDataset, random then sequential, with the default and an all-shards cache."""
    rows = []
    for cache_size in (DEFAULT_CACHE_SIZE, n_shards):
        label = f"cache {cache_size} shards"
        dataset = PatchDataset(RESULTS, cache_size=cache_size)
        rows.append((f"PatchDataset random, {label}", *timed(dataset.__getitem__, shuffled)))
        in_order = range(len(dataset))
        rows.append((f"PatchDataset sequential, {label}", *timed(dataset.__getitem__, in_order)))
        dataset.close()
    return rows


def combined_rows(shuffled: np.ndarray, n_shards: int) -> list[Row]:
    """The combined file: random, sequential, 64-patch slices, per cache of open shards."""
    combined = RESULTS / "patches_combined.h5"
    rows = []
    for cache_size in (DEFAULT_CACHE_SIZE, n_shards):
        label = f"cache {cache_size} shards"
        with open_combined(combined, cache_size=cache_size) as file:
            patches = file["patches"]
            in_order = range(len(patches))
            rows.append((f"combined random, {label}", *timed(patches.__getitem__, shuffled)))
            rows.append((f"combined sequential, {label}", *timed(patches.__getitem__, in_order)))
            slices = [slice(start, start + 64) for start in range(0, len(patches), 64)]
            _, seconds, memory = timed(patches.__getitem__, slices)
            rows.append((f"combined 64-patch slices, {label}", len(patches), seconds, memory))
    return rows


def loader_rows() -> list[Row]:
    """One shuffled epoch per DataLoader set-up."""
    rows = [
        (f"DataLoader, num_workers={workers}", *loader_epoch(PatchDataset(RESULTS), workers))
        for workers in (0, 2)
    ]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    rows.append(
        ("DataLoader, num_workers=0, 1 torch thread", *loader_epoch(PatchDataset(RESULTS), 0))
    )
    torch.set_num_threads(threads)
    return rows


def main() -> None:
    """Build (once) the shards, measure every way of reading, print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patches", type=int, default=4000)
    parser.add_argument("--per-shard", type=int, default=8)
    parser.add_argument("--random-reads", type=int, default=2000)
    args = parser.parse_args()
    manifest_path = RESULTS / "manifest.parquet"
    if not manifest_path.exists() or len(pd.read_parquet(manifest_path)) != args.patches:
        started = time.perf_counter()
        build_results(args.patches, args.per_shard)
        print(f"built in {time.perf_counter() - started:.0f} s")
    shards = list((RESULTS / "patches").glob("*.h5"))
    size_mb = sum(path.stat().st_size for path in shards) / 1e6
    print(
        f"{args.patches} patches of {SIZE} x {SIZE} uint16 in {len(shards)} shards "
        f"({DEFAULT_COMPRESSION}, {size_mb:.0f} MB, {args.patches * PATCH_MB:.0f} MB raw)"
    )
    shuffled = np.random.default_rng(0).permutation(args.patches)[: args.random_reads]
    warm = PatchDataset(RESULTS, cache_size=len(shards))
    timed(warm.patch, range(len(warm)))  # the page cache
    warm.close()
    rows = (
        dataset_rows(shuffled, len(shards)) + combined_rows(shuffled, len(shards)) + loader_rows()
    )
    print(f"{'read':<50}{'patches':>8}{'patches/s':>10}{'ms/patch':>9}{'MB/s':>6}{'RSS +MB':>8}")
    for name, count, seconds, memory in rows:
        rate = count / seconds
        print(
            f"{name:<50}{count:>8}{rate:>10.0f}{1e3 / rate:>9.2f}{rate * PATCH_MB:>6.0f}"
            f"{memory:>8.0f}"
        )


if __name__ == "__main__":
    main()
