"""Moved to `embedpatch.training.combined` (import `open_combined` from
`embedpatch.training`); this alias goes in release 0.4."""

import warnings

from embedpatch.training.combined import open_combined

__all__ = ["open_combined"]

warnings.warn(
    "embedpatch.combine moved to embedpatch.training.combined; this alias goes in 0.4",
    DeprecationWarning,
    stacklevel=2,
)
