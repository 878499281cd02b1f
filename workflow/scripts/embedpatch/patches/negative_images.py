"""Which images negative windows come from: chosen on purpose, and stably.

Two sources, chosen in the config (`patches.negative_images`):
- images with accepted ROIs (`with_rois`): windows away from their ROIs;
- images without ROIs (`without_rois`): `all` of them, `none`, or a seeded `sample`,
  optionally only those whose clinical labels are listed (`clinical`, e.g.
  `{clin_asses_worst: [N, B]}`: exams assessed negative or benign; needs the
  clinical join).

Both are 2D / C-view images without a refused ROI (the caller's candidates). A
sample is decided by each image's draw: a number in [0, 1) from a SHA-256 of the
seed and the image's `anon_dicom_path`, nothing else. So a rerun picks the same
images, and the choice of an image never depends on the table's order:
- `sample_fraction` f keeps exactly the images whose draw is below f. Adding exams
  changes no earlier choice; every stratum gets f of its images on average.
- `sample_count` n splits n over the strata (`stratify`, by default laterality and
  view) in proportion to their sizes (largest remainders), and keeps in each
  stratum the images with the smallest draws. Adding exams moves a stratum's
  boundary, never its order: in each stratum the earlier images kept after the
  addition are the first ones of the same draw order as before (a subset or a
  superset of the earlier choice, never another draw).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

SOURCES = ("all", "none", "sample")


class NegativeChoiceError(ValueError):
    """A negative-image choice the table cannot serve (e.g. a clinical column it lacks)."""


@dataclass(frozen=True)
class NegativeChoice:
    """Where negatives come from (`patches.negative_images` of the config)."""

    with_rois: bool = True
    without_rois: str = "all"
    sample_count: int | None = None
    sample_fraction: float | None = None
    stratify: tuple[str, ...] = ("ImageLateralityFinal", "ViewPosition")
    clinical: tuple[tuple[str, tuple[str, ...]], ...] = ()
    """(column, values kept) pairs: images without ROIs whose label is one of the values."""

    def __post_init__(self) -> None:
        if self.without_rois not in SOURCES:
            raise ValueError(f"without_rois must be one of {SOURCES}, not {self.without_rois!r}")
        sampled = (self.sample_count is not None) + (self.sample_fraction is not None)
        if (self.without_rois == "sample") != (sampled == 1):
            raise ValueError(
                "without_rois: sample needs exactly one of sample_count, sample_fraction"
            )

    @classmethod
    def from_config(cls, section: Mapping[str, Any]) -> NegativeChoice:
        """The choice of a validated `patches.negative_images` config section."""
        return cls(
            with_rois=section["with_rois"],
            without_rois=section["without_rois"],
            sample_count=section["sample_count"],
            sample_fraction=section["sample_fraction"],
            stratify=tuple(section["stratify"]),
            clinical=tuple(
                (name, tuple(str(value) for value in values))
                for name, values in sorted(section["clinical"].items())
            ),
        )

    @property
    def columns(self) -> list[str]:
        """The image columns the choice reads beside the identifiers."""
        return list(dict.fromkeys([*self.stratify, *(name for name, _ in self.clinical)]))


DEFAULT_CHOICE = NegativeChoice()
"""The config's default: every candidate image, with ROIs or without."""


def image_draws(paths: Iterable[str], seed: int) -> np.ndarray:
    """Each image's draw in [0, 1): the first 8 bytes of SHA-256(seed, path) over 2**64."""
    draws = [
        int.from_bytes(hashlib.sha256(f"{seed}\0{path}".encode()).digest()[:8], "big")
        for path in paths
    ]
    return np.array(draws, dtype=np.float64) / 2.0**64


def stratum_quotas(sizes: Mapping[Any, int], count: int) -> dict[Any, int]:
    """`count` split over strata in proportion to their `sizes` (largest remainders, ties
    broken by stratum order), never more than a stratum holds."""
    total = sum(sizes.values())
    if total == 0 or count <= 0:
        return dict.fromkeys(sizes, 0)
    count = min(count, total)
    exact = {key: count * size / total for key, size in sizes.items()}
    quotas = {key: int(value) for key, value in exact.items()}
    by_remainder = sorted(sizes, key=lambda key: (quotas[key] - exact[key], str(key)))
    for key in by_remainder[: count - sum(quotas.values())]:
        quotas[key] += 1
    return quotas


def _restricted(
    images: pd.DataFrame, clinical: Sequence[tuple[str, Sequence[str]]]
) -> pd.DataFrame:
    missing = [name for name, _ in clinical if name not in images.columns]
    if missing:
        raise NegativeChoiceError(
            f"patches.negative_images.clinical names {missing}, which the filtered table does "
            "not have: turn on filter.join_clinical with a clinical table"
        )
    keep = pd.Series(True, index=images.index)
    for name, values in clinical:
        keep &= images[name].astype("string").isin(values).fillna(False)
    return images[keep]


def sample_without_rois(images: pd.DataFrame, choice: NegativeChoice, seed: int) -> pd.DataFrame:
    """The images without ROIs that get negatives (rows of `images`, in their order)."""
    if choice.without_rois == "none":
        return images.iloc[0:0]
    images = _restricted(images, choice.clinical)
    if choice.without_rois == "all":
        return images
    draws = pd.Series(image_draws(images["anon_dicom_path"], seed), index=images.index)
    if choice.sample_fraction is not None:
        return images[draws < choice.sample_fraction]
    strata = pd.Series("", index=images.index, dtype="string")
    for name in choice.stratify:
        strata = strata + "\0" + images[name].astype("string").fillna("")
    quotas = stratum_quotas(strata.value_counts().to_dict(), int(choice.sample_count))
    order = pd.DataFrame({"stratum": strata, "draw": draws, "path": images["anon_dicom_path"]})
    order = order.sort_values(["stratum", "draw", "path"])
    rank = order.groupby("stratum").cumcount()
    chosen = order.index[rank.to_numpy() < order["stratum"].map(quotas).to_numpy()]
    return images.loc[images.index.isin(chosen)]


def negative_images(
    candidates: pd.DataFrame, roi_paths: Iterable[str], choice: NegativeChoice, seed: int
) -> pd.DataFrame:
    """The candidate images (2D / C-view, no refused ROI) that get negative windows:
    those with accepted ROIs (`roi_paths`) when `with_rois`, and the chosen images
    without ROIs. Rows of `candidates`, in their order."""
    has_rois = candidates["anon_dicom_path"].isin(set(roi_paths))
    with_rois = candidates[has_rois] if choice.with_rois else candidates.iloc[0:0]
    without = sample_without_rois(candidates[~has_rois], choice, seed)
    return candidates.loc[candidates.index.isin(with_rois.index.union(without.index))]
