"""Batches of exams: a stable assignment, and batch jobs that rewrite only stale shards.

extract_batch runs on real demo DICOMs and writes real shards; which shards it wrote
is read from the files themselves (inode and mtime change on every rewrite).
"""

import json
import os
import shutil
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from embedpatch.demo import SOURCE_PREFIX
from embedpatch.patches.batch_job import BatchError, extract_batch, verify_shards
from embedpatch.patches.batches import (
    AUTO_MAX_BATCHES,
    auto_batch_count,
    batch_name,
    group_into_batches,
)
from embedpatch.patches.shards import read_shard_tables, shard_is_complete

SETTINGS = json.dumps(
    {
        "size": 32,
        "padding": ["tissue"],
        "dbt_frames": "all",
        "negative_margin": 8,
        "seed": 0,
        "pixel_values": "stored",
        "compression": "gzip",
    },
    sort_keys=True,
)
ACC = st.integers(min_value=1, max_value=10**16).map(str)


@given(ACC, st.integers(min_value=1, max_value=5000))
def test_batch_name_is_a_stable_number_below_the_count(acc_anon, n_batches):
    name = batch_name(acc_anon, n_batches)
    assert name == batch_name(acc_anon, n_batches)
    assert name.startswith("b") and 0 <= int(name[1:]) < n_batches
    assert len(name) == 1 + len(str(n_batches - 1))


@given(st.sets(ACC, max_size=40), st.sets(ACC, max_size=10), st.integers(1, 50))
def test_new_exams_never_move_old_ones(old, new, n_batches):
    before = group_into_batches({acc: f"spec {acc}" for acc in old}, n_batches)
    after = group_into_batches({acc: f"spec {acc}" for acc in old | new}, n_batches)
    for batch, exams in before.items():
        assert exams.items() <= after[batch].items()
    assert sorted(acc for exams in after.values() for acc in exams) == sorted(old | new)
    assert all(exams for exams in after.values())


@given(st.integers(1, 10**6), st.integers(0, 10**6))
def test_auto_batches_grow_in_powers_of_two_with_the_cohort(n_exams, more):
    count = auto_batch_count(n_exams)
    assert count & (count - 1) == 0 and 1 <= count <= min(n_exams, AUTO_MAX_BATCHES)
    assert count <= max(2, n_exams // 4)  # no job of fewer than 4 exams beyond the first two
    assert count <= auto_batch_count(n_exams + more)  # never fewer for a larger cohort


def test_auto_batches_of_small_and_large_cohorts():
    counts = {n: auto_batch_count(n) for n in (1, 2, 4, 12, 100, 10_000)}
    assert counts == {1: 1, 2: 2, 4: 2, 12: 2, 100: 16, 10_000: 256}


def test_batch_count_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        batch_name("1", 0)


@pytest.fixture(scope="module")
def flat_images(demo_cohort) -> list[dict]:
    """Uncompressed demo 2D images that read: spec image entries with one negative each."""
    table = pd.read_csv(demo_cohort / "tables/metadata.csv", dtype=str)
    table = table[table["FinalImageType"].eq("2D") & table["anon_dicom_path"].notna()]
    entries = []
    for row in table.to_dict("records"):
        local = demo_cohort / "images" / row["anon_dicom_path"].removeprefix(SOURCE_PREFIX)
        if local.is_file() and local.stat().st_size > 10_000:
            entries.append(
                {
                    "anon_dicom_path": row["anon_dicom_path"],
                    "dicom_path": str(local),
                    "FinalImageType": "2D",
                    "ImageLateralityFinal": row["ImageLateralityFinal"],
                    "ViewPosition": row["ViewPosition"],
                    "rois": [],
                    "avoid": [],
                    "negatives": 1,
                }
            )
    return entries


def accs_in(batch: str, n_batches: int, count: int) -> list[str]:
    """`count` acc_anon values (16 digits) that fall in `batch`."""
    found = [
        str(acc)
        for acc in range(10**15, 10**15 + 10_000)
        if batch_name(str(acc), n_batches) == batch
    ]
    return found[:count]


def spec(acc_anon: str, *images: dict) -> str:
    exam = {"acc_anon": int(acc_anon), "empi_anon": 7, "images": list(images)}
    return json.dumps(exam, sort_keys=True, separators=(",", ":"))


def stamps(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.stem: (p.stat().st_ino, p.stat().st_mtime_ns) for p in folder.glob("*.h5")}


def run_batch(specs: dict[str, str], folder: Path, n_batches: int = 2) -> dict[str, int]:
    batch = batch_name(next(iter(specs)), n_batches)
    record, table = (folder / "batches" / f"{batch}.{kind}" for kind in ("json", "parquet"))
    return extract_batch(specs, SETTINGS, str(folder), str(record), str(table), n_batches)


@pytest.fixture
def batch(flat_images, tmp_path) -> tuple[dict[str, str], Path]:
    """Three exams of batch b0 (of 2), extracted once into tmp_path."""
    exams = dict(zip(accs_in("b0", 2, 3), flat_images, strict=False))
    specs = {acc: spec(acc, image) for acc, image in exams.items()}
    assert run_batch(specs, tmp_path) == {"extracted": 3, "current": 0, "failed": 0, "removed": 0}
    return specs, tmp_path


def test_the_record_lists_every_shard_of_the_batch(batch):
    specs, folder = batch
    record = json.loads((folder / "batches/b0.json").read_text())
    assert record["batch"] == "b0"
    assert {acc: entry["shard"] for acc, entry in record["exams"].items()} == {
        acc: str(folder / f"{acc}.h5") for acc in specs
    }
    for acc in specs:
        attrs = read_shard_tables(folder / f"{acc}.h5").attrs
        assert attrs["spec_hash"] == record["exams"][acc]["spec_hash"]


def test_the_table_holds_every_patch_of_the_batch_shards(batch):
    specs, folder = batch
    table = pd.read_parquet(folder / "batches/b0.parquet")
    for acc in specs:
        shard = str(folder / f"{acc}.h5")
        rows = table[table["shard"] == shard].drop(columns="shard").reset_index(drop=True)
        pd.testing.assert_frame_equal(rows, read_shard_tables(shard).info, check_dtype=False)
    assert len(table) == sum(read_shard_tables(folder / f"{acc}.h5").attrs["n_patches"]
                             for acc in specs)  # fmt: skip


def test_a_rerun_keeps_every_current_shard(batch):
    specs, folder = batch
    before = stamps(folder)
    assert run_batch(specs, folder)["current"] == 3
    assert stamps(folder) == before


def test_only_the_changed_exam_is_rewritten(batch, flat_images):
    specs, folder = batch
    before = stamps(folder)
    changed = sorted(specs)[1]
    specs[changed] = spec(changed, flat_images[1], flat_images[3])
    assert run_batch(specs, folder)["extracted"] == 1
    after = stamps(folder)
    assert {acc for acc in specs if after[acc] != before[acc]} == {changed}
    assert read_shard_tables(folder / f"{changed}.h5").attrs["n_patches"] == 2
    # The table is whole again: the kept shards' rows too, read back from them.
    table = pd.read_parquet(folder / "batches/b0.parquet")
    assert table.groupby("shard").size().to_dict() == {
        str(folder / f"{acc}.h5"): 2 if acc == changed else 1 for acc in specs
    }


def test_an_image_newer_than_its_shard_rewrites_that_shard(batch):
    specs, folder = batch
    before = stamps(folder)
    touched = sorted(specs)[0]
    image = json.loads(specs[touched])["images"][0]["dicom_path"]
    later = before[touched][1] + 10**9
    original = Path(image).stat()
    os.utime(image, ns=(later, later))
    try:
        run_batch(specs, folder)
    finally:  # the demo images are shared with later tests
        os.utime(image, ns=(original.st_atime_ns, original.st_mtime_ns))
    after = stamps(folder)
    assert {acc for acc in specs if after[acc] != before[acc]} == {touched}


def test_a_departed_exam_loses_its_shard_and_other_batches_keep_theirs(batch, flat_images):
    specs, folder = batch
    other = accs_in("b1", 2, 1)[0]
    run_batch({other: spec(other, flat_images[0])}, folder)
    departed = sorted(specs)[2]
    del specs[departed]
    assert run_batch(specs, folder)["removed"] == 1
    assert set(stamps(folder)) == set(specs) | {other}


def test_a_failing_exam_fails_the_batch_after_the_others_are_written(flat_images, tmp_path):
    good, bad = accs_in("b0", 2, 2)
    specs = {good: spec(good, flat_images[0]), bad: spec(bad, flat_images[0], flat_images[0])}
    with pytest.raises(BatchError, match="1 of 2 exams of batch b0 failed"):
        run_batch(specs, tmp_path)
    assert set(stamps(tmp_path)) == {good}
    assert not (tmp_path / "batches/b0.json").exists()
    assert not (tmp_path / "batches/b0.parquet").exists()


def test_an_exam_of_another_batch_is_refused(flat_images, tmp_path):
    other = accs_in("b1", 2, 1)[0]
    with pytest.raises(ValueError, match="does not belong to batch b0"):
        extract_batch(
            {other: spec(other, flat_images[0])},
            SETTINGS,
            str(tmp_path),
            str(tmp_path / "b0.json"),
            str(tmp_path / "b0.parquet"),
            2,
        )


def damage_in_place(path: Path) -> None:
    """Overwrite the shard's HDF5 superblock, keeping its size and modification time."""
    stat = path.stat()
    with open(path, "r+b") as file:
        file.write(b"\0" * 64)
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_a_recheck_decides_from_the_batch_state_without_opening_shards(batch):
    specs, folder = batch
    damaged = sorted(specs)[0]
    damage_in_place(folder / f"{damaged}.h5")
    before = stamps(folder)
    # Same size and time: the re-check keeps it, which it could not if it opened it.
    assert run_batch(specs, folder) == {"extracted": 0, "current": 3, "failed": 0, "removed": 0}
    assert stamps(folder) == before
    assert not shard_is_complete(folder / f"{damaged}.h5")
    # The batch table is whole all the same: the rows come from the state.
    assert len(pd.read_parquet(folder / "batches/b0.parquet")) == 3
    # Verifying opens every shard: it finds the damaged one and deletes it with its
    # batch's record (Snakemake then reruns the batch), and the batch rewrites it.
    assert (folder / "batches/b0.json").is_file()
    assert verify_shards(str(folder)) == [str(folder / f"{damaged}.h5")]
    assert not (folder / "batches/b0.json").exists()
    assert run_batch(specs, folder)["extracted"] == 1
    assert shard_is_complete(folder / f"{damaged}.h5")


def test_a_truncated_or_deleted_shard_is_rewritten(batch):
    specs, folder = batch
    truncated, deleted = sorted(specs)[:2]
    with open(folder / f"{truncated}.h5", "r+b") as file:
        file.truncate(1000)
    (folder / f"{deleted}.h5").unlink()
    assert run_batch(specs, folder)["extracted"] == 2
    assert all(shard_is_complete(folder / f"{acc}.h5") for acc in specs)


def test_without_a_state_the_shards_are_opened_and_kept(batch):
    specs, folder = batch
    table = pd.read_parquet(folder / "batches/b0.parquet")
    shutil.rmtree(folder / "state")
    before = stamps(folder)
    assert run_batch(specs, folder)["current"] == 3
    assert stamps(folder) == before
    pd.testing.assert_frame_equal(pd.read_parquet(folder / "batches/b0.parquet"), table)
    assert (folder / "state/b0.json").is_file()
