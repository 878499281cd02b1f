"""Patient-level train / validation / test splits, decided by a seeded hash of empi_anon.

Each patient's split depends only on its own empi_anon, the seed and the fractions:
the hash (BLAKE2b of "seed:empi_anon") maps the patient to a number in [0, 1), and
consecutive intervals of the fractions' lengths name the split. So no patient is in
two splits, a rerun gives the same splits, and adding patients (a new EMBED release)
never moves an existing one. The price: the split sizes follow the fractions only on
average (binomially); a cohort of a handful of patients can leave a split empty.
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Iterable, Mapping
from pathlib import Path

import numpy as np
import pandas as pd

from embedpatch.io.atomic import atomic_output

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
DEFAULT_FRACTIONS = {"train": 0.8, "validation": 0.1, "test": 0.1}
SPLITS_FILE = "splits.parquet"
"""The splits table's name in the results folder (next to manifest.parquet)."""


def _checked(fractions: Mapping[str, float]) -> dict[str, float]:
    """The fractions in SPLITS order, after checking they are known, >= 0 and sum to 1."""
    unknown = sorted(set(fractions) - set(SPLITS))
    values = {name: float(fractions.get(name, 0.0)) for name in SPLITS}
    if unknown or min(values.values()) < 0 or not math.isclose(sum(values.values()), 1.0):
        raise ValueError(f"split fractions must be >= 0, sum to 1, name only {SPLITS}: {fractions}")
    return values


def patient_position(empi_anon: int, seed: int) -> float:
    """The patient's place in [0, 1): a hash of the seed and empi_anon, not of anyone else."""
    digest = hashlib.blake2b(f"{seed}:{int(empi_anon)}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def assign_splits(
    patients: Iterable[int], fractions: Mapping[str, float] = DEFAULT_FRACTIONS, seed: int = 0
) -> pd.DataFrame:
    """One row per distinct patient, sorted: empi_anon and its split."""
    values = _checked(fractions)
    empi = np.unique(np.asarray(list(patients), dtype=np.int64))
    positions = np.array([patient_position(patient, seed) for patient in empi])
    bounds = np.cumsum(list(values.values()))[:-1]  # the last split takes the rest up to 1
    names = np.array(SPLITS, dtype=object)[np.searchsorted(bounds, positions, side="right")]
    return pd.DataFrame(
        {"empi_anon": pd.array(empi, dtype="Int64"), "split": pd.array(names, dtype="string")}
    )


def read_splits(path: str | Path) -> pd.DataFrame:
    """A splits table written by `write_splits`."""
    return pd.read_parquet(path, dtype_backend="numpy_nullable")


def write_splits(
    manifest_path: str | Path, splits_path: str | Path, fractions: Mapping[str, float], seed: int
) -> dict[str, int]:
    """Split the manifest's patients; write empi_anon -> split; return patients per split."""
    manifest = pd.read_parquet(manifest_path, columns=["empi_anon"], dtype_backend="numpy_nullable")
    splits = assign_splits(manifest["empi_anon"], fractions, seed)
    with atomic_output(splits_path) as temporary:
        splits.to_parquet(temporary, index=False)
    counts = {name: int((splits["split"] == name).sum()) for name in SPLITS}
    log.info("patients per split (seed %d, fractions %s): %s", seed, dict(fractions), counts)
    for name in SPLITS:
        if counts[name] == 0 and fractions.get(name, 0) > 0:
            log.warning("split %r has no patient (%d patients in all)", name, len(splits))
    return counts
