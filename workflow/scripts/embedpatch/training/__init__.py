"""Reading the shards for training: imports nothing of Snakemake or matplotlib.

`splits` (patient-level train / validation / test by a seeded hash), `dataset`
(`PatchDataset`, a map-style dataset over the manifest, and the torch adapter),
`combined` (the one HDF5 file over every shard). The names users need are here:
`from embedpatch.training import PatchDataset, torch_dataset, open_combined`.
"""

from embedpatch.training.combined import open_combined
from embedpatch.training.dataset import PatchDataset, as_torch, torch_dataset
from embedpatch.training.splits import read_splits

__all__ = ["PatchDataset", "as_torch", "open_combined", "read_splits", "torch_dataset"]
