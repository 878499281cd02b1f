"""Which images get negatives: the configured sources, seeded, stratified, and stable when
exams are added (properties over random tables)."""

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from embedpatch.config import ConfigError, validate_config
from embedpatch.patches.negative_images import (
    NegativeChoice,
    NegativeChoiceError,
    image_draws,
    negative_images,
    sample_without_rois,
    stratum_quotas,
)

LATERALITIES = ["L", "R"]
VIEWS = ["CC", "MLO", "XCCL"]


def images(names: list[int], assessment: str = "N") -> pd.DataFrame:
    """Images without ROIs, laterality and view spread over the names."""
    return pd.DataFrame(
        {
            "anon_dicom_path": [f"cohort_1/{name}.dcm" for name in names],
            "ImageLateralityFinal": [LATERALITIES[name % 2] for name in names],
            "ViewPosition": [VIEWS[name % 3] for name in names],
            "clin_asses_worst": [assessment if name % 5 else "A" for name in names],
        }
    )


def picked(table: pd.DataFrame) -> set[str]:
    return set(table["anon_dicom_path"])


NAMES = st.lists(st.integers(0, 10**6), unique=True, max_size=120)
SEEDS = st.integers(0, 2**31)


@given(NAMES, NAMES, SEEDS, st.floats(0.01, 1.0))
def test_a_fraction_keeps_every_earlier_choice_when_images_are_added(old, new, seed, fraction):
    new = [name for name in new if name not in old]
    choice = NegativeChoice(without_rois="sample", sample_fraction=fraction)
    before = picked(sample_without_rois(images(old), choice, seed))
    after = picked(sample_without_rois(images(old + new), choice, seed))
    assert {path for path in after if path in set(images(old)["anon_dicom_path"])} == before
    assert before <= after


@given(NAMES, NAMES, SEEDS, st.integers(1, 60))
def test_a_count_moves_only_each_strata_boundary_when_images_are_added(old, new, seed, count):
    new = [name for name in new if name not in old]
    choice = NegativeChoice(without_rois="sample", sample_count=count)
    before = sample_without_rois(images(old), choice, seed)
    after = sample_without_rois(images(old + new), choice, seed)
    assert len(after) == min(count, len(old) + len(new))
    earlier = images(old)
    for (laterality, view), stratum in earlier.groupby(["ImageLateralityFinal", "ViewPosition"]):
        in_stratum = set(stratum["anon_dicom_path"])
        kept_before, kept_after = picked(before) & in_stratum, picked(after) & in_stratum
        # Nested: the same draw order, cut at another place; never another draw.
        assert kept_before <= kept_after or kept_after <= kept_before, (laterality, view)


@given(NAMES, SEEDS, st.integers(1, 60))
def test_the_choice_does_not_depend_on_row_order(names, seed, count):
    choice = NegativeChoice(without_rois="sample", sample_count=count)
    table = images(names)
    shuffled = table.sample(frac=1, random_state=seed % 1000)
    assert picked(sample_without_rois(table, choice, seed)) == picked(
        sample_without_rois(shuffled, choice, seed)
    )


@given(st.dictionaries(st.text(max_size=3), st.integers(0, 500), max_size=8), st.integers(0, 2000))
def test_quotas_are_proportional_and_add_up(sizes, count):
    quotas = stratum_quotas(sizes, count)
    total = sum(sizes.values())
    assert sum(quotas.values()) == min(count, total)
    for key, size in sizes.items():
        assert 0 <= quotas[key] <= size
        if total:
            assert abs(quotas[key] - min(count, total) * size / total) < 1


@settings(max_examples=20)
@given(SEEDS)
def test_draws_are_uniform_and_seeded(seed):
    paths = [f"cohort_1/{name}.dcm" for name in range(4000)]
    draws = image_draws(paths, seed)
    assert ((draws >= 0) & (draws < 1)).all()
    assert 0.45 < draws.mean() < 0.55
    assert (image_draws(paths, seed) == draws).all()
    assert (image_draws(paths, seed + 1) != draws).mean() > 0.99


def test_a_count_is_stratified_by_laterality_and_view():
    table = images(list(range(1200)))
    chosen = sample_without_rois(
        table, NegativeChoice(without_rois="sample", sample_count=120), seed=3
    )
    shares = chosen.groupby(["ImageLateralityFinal", "ViewPosition"]).size()
    assert len(shares) == 6 and (shares == 20).all()


def test_clinical_labels_restrict_the_images_without_rois():
    table = images(list(range(50)))
    choice = NegativeChoice(without_rois="all", clinical=(("clin_asses_worst", ("N", "B")),))
    chosen = sample_without_rois(table, choice, seed=0)
    assert set(chosen["clin_asses_worst"]) == {"N"}
    assert len(chosen) == 40  # every 5th image is assessed A


def test_clinical_restriction_without_the_join_is_an_error():
    table = images([1, 2]).drop(columns="clin_asses_worst")
    choice = NegativeChoice(clinical=(("clin_asses_worst", ("N",)),))
    with pytest.raises(NegativeChoiceError, match="join_clinical"):
        sample_without_rois(table, choice, seed=0)


def test_sources_images_with_rois_and_a_sample_of_the_others():
    table = images(list(range(40)))
    roi_paths = list(table["anon_dicom_path"][:10])
    only_rois = NegativeChoice(with_rois=True, without_rois="none")
    assert picked(negative_images(table, roi_paths, only_rois, 0)) == set(roi_paths)
    sample = NegativeChoice(with_rois=False, without_rois="sample", sample_count=6)
    chosen = picked(negative_images(table, roi_paths, sample, 0))
    assert len(chosen) == 6 and not chosen & set(roi_paths)
    both = NegativeChoice(without_rois="sample", sample_count=6)
    assert picked(negative_images(table, roi_paths, both, 0)) == chosen | set(roi_paths)


def test_the_config_says_what_a_sample_needs():
    base = {"patches": {"negative_images": {"without_rois": "sample"}}}
    with pytest.raises(ConfigError, match="exactly one of sample_count, sample_fraction"):
        validate_config(base)
    count = {"without_rois": "all", "sample_count": 5}
    with pytest.raises(ConfigError, match="sample_count': set only with without_rois: sample"):
        validate_config({"patches": {"negative_images": count}})
    clinical = {"negative_images": {"clinical": {"clin_asses_worst": ["N"]}}}
    with pytest.raises(ConfigError, match=r"needs filter\.join_clinical"):
        validate_config({"patches": clinical, "filter": {"join_clinical": False}})
    sample = {"without_rois": "sample", "sample_fraction": 0.1}
    config = validate_config({"patches": {"negative_images": sample}})
    assert NegativeChoice.from_config(config["patches"]["negative_images"]).sample_fraction == 0.1
