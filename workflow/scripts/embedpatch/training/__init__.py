"""Reading the shards for training: imports nothing of Snakemake or matplotlib.

`splits` (patient-level train / validation / test by a seeded hash), `dataset`
(`PatchDataset`, a map-style dataset over the manifest, and the torch adapter),
`combined` (the one HDF5 file indexing every shard), `shard_pool` (the open shards both
read through, each verified against the digest its index recorded). The names users
need are here: `from embedpatch.training import PatchDataset, torch_dataset, open_combined`.
"""

from embedpatch.training.combined import open_combined
from embedpatch.training.dataset import PatchDataset, as_torch, torch_dataset
from embedpatch.training.shard_pool import MissingShardError, StaleShardError
from embedpatch.training.splits import read_splits

__all__ = [
    "MissingShardError",
    "PatchDataset",
    "StaleShardError",
    "as_torch",
    "open_combined",
    "read_splits",
    "torch_dataset",
]
