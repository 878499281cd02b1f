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
    BatchLayout,
    auto_batch_count,
    batch_name,
    plan_layout,
)
from embedpatch.patches.manifest import remove_departed_batches, remove_departed_shards
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


def members(layout: BatchLayout) -> dict[str, str]:
    """acc_anon -> its batch."""
    return {acc: name for name, accs in layout.batches.items() for acc in accs}


def assert_whole(layout: BatchLayout, exams: set[str]) -> None:
    """Every exam in exactly one batch, no batch empty, each batch's exams sorted."""
    listed = [acc for accs in layout.batches.values() for acc in accs]
    assert sorted(listed) == sorted(exams)
    assert all(accs and list(accs) == sorted(accs) for accs in layout.batches.values())


@given(st.sets(ACC, max_size=60), st.sets(ACC, max_size=30), st.integers(1, 50))
def test_known_exams_stay_in_their_batch_and_new_ones_go_to_new_batches(old, new, n_batches):
    before = plan_layout(None, old, n_batches)
    assert before == BatchLayout.by_hash(old, n_batches)
    after = plan_layout(before, old | new, n_batches)
    assert_whole(after, old | new)
    if after != BatchLayout.by_hash(old | new, n_batches):  # not rebuilt by hash
        assert members(after).items() >= members(before).items()
        fresh = after.batches.keys() - before.batches.keys()
        assert {acc for name in fresh for acc in after.batches[name]} == new - old
    # The same exams again: the same layout (a dry run before the run changes nothing).
    assert plan_layout(after, old | new, n_batches) == after


@given(st.sets(ACC, min_size=1, max_size=60), st.integers(1, 20), st.data())
def test_departed_exams_leave_their_batch_and_the_others_stay(exams, n_batches, data):
    before = plan_layout(None, exams, n_batches)
    kept = data.draw(st.sets(st.sampled_from(sorted(exams))))
    after = plan_layout(before, kept, n_batches)
    assert_whole(after, kept)
    assert members(after) == {acc: name for acc, name in members(before).items() if acc in kept}


def test_ten_new_exams_at_ten_thousand_fill_two_new_batches():
    exams = {str(10**15 + number) for number in range(10_000)}
    before = plan_layout(None, exams, 256)
    new = {str(2 * 10**15 + number) for number in range(10)}
    after = plan_layout(before, exams | new, 256)
    assert after.added_batches() == ["b256", "b257"]
    assert [len(after.batches[name]) for name in after.added_batches()] == [5, 5]
    assert {name: after.batches[name] for name in before.batches} == before.batches
    # More new exams than fit two batches of the mean size (40): batches of about 40.
    more = {str(3 * 10**15 + number) for number in range(100)}
    later = plan_layout(after, exams | new | more, 256)
    assert later.added_batches() == ["b256", "b257", "b258", "b259", "b260"]
    assert [len(later.batches[name]) for name in later.added_batches()] == [5, 5, 34, 33, 33]


def test_another_batch_count_or_too_many_added_batches_rebuild_the_layout_by_hash():
    exams = {str(10**15 + number) for number in range(40)}
    layout = plan_layout(None, exams, 4)
    assert plan_layout(layout, exams, 8) == BatchLayout.by_hash(exams, 8)
    for step in range(1, 10):  # one exam a run: a new batch each time
        exams = exams | {str(2 * 10**15 + step)}
        layout = plan_layout(layout, exams, 4)
        assert len(layout.added_batches()) == (step if step <= 4 else step - 5)
    assert_whole(layout, exams)


def test_a_layout_is_saved_and_read_back(tmp_path):
    path = tmp_path / "patches/layout.json"
    layout = plan_layout(plan_layout(None, {"1", "2", "3"}, 2), {"1", "2", "3", "4"}, 2)
    assert layout.save(path)
    assert not layout.save(path)  # unchanged: not written again
    assert BatchLayout.read(path) == layout
    assert BatchLayout.read(tmp_path / "none.json") is None
    for damaged in ("{", "[]", '{"version": 1}', '{"version": 0, "hashed": 2, "batches": {}}'):
        path.write_text(damaged)
        assert BatchLayout.read(path) is None


def test_grouping_specifications_follows_the_layout():
    layout = BatchLayout(2, {"b0": ("1", "3"), "b2": ("2",)})
    assert layout.group({"3": "c", "2": "b", "1": "a"}) == {
        "b0": {"1": "a", "3": "c"},
        "b2": {"2": "b"},
    }
    assert layout.group({"2": "b"}) == {"b2": {"2": "b"}}
    with pytest.raises(KeyError):
        layout.group({"4": "d"})


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
    """Run the batch of the first exam's hashed batch (its record's name)."""
    batch = batch_name(next(iter(specs)), n_batches)
    record, table = (folder / "batches" / f"{batch}.{kind}" for kind in ("json", "parquet"))
    return extract_batch(specs, SETTINGS, str(folder), str(record), str(table))


@pytest.fixture
def batch(flat_images, tmp_path) -> tuple[dict[str, str], Path]:
    """Three exams of batch b0 (of 2), extracted once into tmp_path."""
    exams = dict(zip(accs_in("b0", 2, 3), flat_images, strict=False))
    specs = {acc: spec(acc, image) for acc, image in exams.items()}
    assert run_batch(specs, tmp_path) == {"extracted": 3, "current": 0, "failed": 0}
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
    assert run_batch(specs, folder)["current"] == 2
    assert departed in stamps(folder)  # a batch job deletes no shard: the manifest's rule does
    listed = {
        acc
        for path in (folder / "batches").glob("*.json")
        for acc in json.loads(path.read_text())["exams"]
    }
    assert remove_departed_shards(folder, listed) == [departed]
    assert set(stamps(folder)) == set(specs) | {other}


def test_a_failing_exam_fails_the_batch_after_the_others_are_written(flat_images, tmp_path):
    good, bad = accs_in("b0", 2, 2)
    specs = {good: spec(good, flat_images[0]), bad: spec(bad, flat_images[0], flat_images[0])}
    with pytest.raises(BatchError, match="1 of 2 exams of batch b0 failed"):
        run_batch(specs, tmp_path)
    assert set(stamps(tmp_path)) == {good}
    assert not (tmp_path / "batches/b0.json").exists()
    assert not (tmp_path / "batches/b0.parquet").exists()


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
    assert run_batch(specs, folder) == {"extracted": 0, "current": 3, "failed": 0}
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


def test_the_outputs_and_state_of_a_batch_no_longer_in_the_layout_are_deleted(tmp_path):
    for name in ("batches/b0.json", "batches/b0.parquet", "batches/b12.json", "state/b12.json"):
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text("{}")
    (tmp_path / "batches/.b12.json.123.tmp").write_text("")
    assert remove_departed_batches(tmp_path, {"b0"}) == ["b12"]
    left = sorted(str(path.relative_to(tmp_path)) for path in tmp_path.rglob("*.*"))
    assert left == ["batches/.b12.json.123.tmp", "batches/b0.json", "batches/b0.parquet"]
