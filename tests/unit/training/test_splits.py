"""Patient-level splits: fractions, determinism, no leakage, stable when patients are added."""

import numpy as np
import pandas as pd
import pytest
from test_dataset import write_results

from embedpatch.training.dataset import PatchDataset
from embedpatch.training.splits import (
    DEFAULT_FRACTIONS,
    SPLITS,
    assign_splits,
    read_splits,
    write_splits,
)

PATIENTS = np.random.default_rng(0).choice(10**8, 20_000, replace=False)


def split_of(table: pd.DataFrame) -> dict[int, str]:
    return dict(zip(table["empi_anon"], table["split"], strict=True))


def test_fractions_are_followed_on_a_large_cohort():
    splits = assign_splits(PATIENTS, DEFAULT_FRACTIONS, seed=3)
    shares = splits["split"].value_counts(normalize=True)
    for name, fraction in DEFAULT_FRACTIONS.items():
        assert shares[name] == pytest.approx(fraction, abs=0.01)


def test_one_row_per_patient_however_often_it_appears():
    splits = assign_splits([5, 3, 5, 5, 3, 9], seed=0)
    assert splits["empi_anon"].tolist() == [3, 5, 9]
    assert set(splits["split"]) <= set(SPLITS)


def test_same_seed_same_splits_other_seed_other_splits():
    first = assign_splits(PATIENTS, seed=1)
    pd.testing.assert_frame_equal(first, assign_splits(PATIENTS[::-1], seed=1))
    assert (first["split"] != assign_splits(PATIENTS, seed=2)["split"]).mean() > 0.2


def test_adding_patients_moves_no_existing_patient():
    before = split_of(assign_splits(PATIENTS[:5000], seed=0))
    after = split_of(assign_splits(PATIENTS, seed=0))
    assert {patient: after[patient] for patient in before} == before


def test_a_zero_fraction_gets_no_patient():
    splits = assign_splits(PATIENTS, {"train": 0.9, "validation": 0.0, "test": 0.1}, seed=0)
    assert set(splits["split"]) == {"train", "test"}


@pytest.mark.parametrize(
    "fractions",
    [
        {"train": 0.8, "validation": 0.1},
        {"train": 1.1, "validation": -0.1, "test": 0.0},
        {"train": 0.8, "val": 0.1, "test": 0.1},
    ],
    ids=["sum", "negative", "unknown"],
)
def test_bad_fractions_are_refused(fractions):
    with pytest.raises(ValueError, match="fractions"):
        assign_splits(PATIENTS[:10], fractions)


def test_split_datasets_share_no_patient_and_cover_all(tmp_path):
    results = write_results(tmp_path, n_patients=30, seed=1)
    write_splits(results / "manifest.parquet", results / "splits.parquet", DEFAULT_FRACTIONS, 4)
    patients = {
        name: set(PatchDataset(results, split=name).manifest["empi_anon"]) for name in SPLITS
    }
    assert all(patients.values())
    assert not (patients["train"] & patients["validation"])
    assert not (patients["train"] & patients["test"])
    assert not (patients["validation"] & patients["test"])
    manifest = pd.read_parquet(results / "manifest.parquet")
    assert set().union(*patients.values()) == set(manifest["empi_anon"])
    table = read_splits(results / "splits.parquet")
    assert table["empi_anon"].is_unique and len(table) == 30
    assert split_of(table) == split_of(assign_splits(manifest["empi_anon"], seed=4))
