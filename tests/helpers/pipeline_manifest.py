"""The manifest of some shards, built the way the pipeline builds it (for tests that write
their own shards): each extraction batch's table of patch rows, then collect_patches's
manifest of those tables."""

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from embedpatch.patches.manifest import manifest_from_batch_tables, read_shards


def build_manifest(
    shard_paths: Sequence[str], results: str | Path, filtered_path: str | Path
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The manifest of the shards (one batch of them) and their extraction rejections.

    The batch table is written as patches.batch_job.extract_batch writes it, below `results`
    (patches/batches/), and read back by manifest.manifest_from_batch_tables.
    """
    patches, rejections = read_shards(sorted(str(path) for path in shard_paths))
    table = Path(results) / "patches" / "batches" / "b0.parquet"
    table.parent.mkdir(parents=True, exist_ok=True)
    patches.to_parquet(table, index=False)
    return manifest_from_batch_tables([str(table)], str(results), str(filtered_path)), rejections
