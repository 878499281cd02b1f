"""Moved to `embedpatch.training` (import from there); this alias goes in release 0.4."""

import warnings

from embedpatch.training.dataset import (
    PatchDataset,
    TorchPatches,
    as_torch,
    manifest_path,
    select_patches,
    torch_dataset,
)

__all__ = [
    "PatchDataset",
    "TorchPatches",
    "as_torch",
    "manifest_path",
    "select_patches",
    "torch_dataset",
]

warnings.warn(
    "embedpatch.dataset moved to embedpatch.training; this alias goes in 0.4",
    DeprecationWarning,
    stacklevel=2,
)
