"""The combined file: a virtual dataset equal to the shards, movable, with the manifest."""

import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from embedpatch.combine import combine_shards, missing_sources, open_combined
from embedpatch.dataset import PatchDataset
from embedpatch.shards import read_column_group as _read_table
from embedpatch.shards import read_shard
from test_dataset import write_results

ROOT = Path(__file__).resolve().parent.parent


def combine(results: Path) -> Path:
    combined = results / "patches_combined.h5"
    summary = combine_shards(str(results / "manifest.parquet"), str(combined))
    manifest = pd.read_parquet(results / "manifest.parquet")
    assert summary == {"n_patches": len(manifest), "n_shards": manifest["shard"].nunique()}
    return combined


def values(column: pd.Series) -> list:
    return [None if pd.isna(value) else value for value in column]


def assert_combined_equals_shards(results: Path) -> None:
    """Every patch and manifest value of the combined file equals the shards' and manifest's."""
    manifest = pd.read_parquet(results / "manifest.parquet", dtype_backend="numpy_nullable")
    with h5py.File(results / "patches_combined.h5", "r") as file:
        assert file["patches"].is_virtual
        combined = file["patches"][()]
        columns = _read_table(file["manifest"])
    assert list(columns) == list(manifest.columns)
    for name in manifest.columns:  # numbers with gaps are stored as float64, gaps as NaN
        assert values(columns[name]) == values(manifest[name]), name
    expected = {shard: read_shard(results / shard).patches for shard in manifest["shard"].unique()}
    assert combined.shape[0] == len(manifest) > 0
    rows = zip(manifest["shard"], manifest["index"], strict=True)
    for position, (shard, index) in enumerate(rows):
        np.testing.assert_array_equal(combined[position], expected[shard][index])


@pytest.fixture
def results(tmp_path) -> Path:
    return write_results(tmp_path / "results", n_patients=12)


def test_combined_file_equals_the_shards_patch_by_patch(results):
    combine(results)
    assert_combined_equals_shards(results)
    with h5py.File(results / "patches_combined.h5", "r") as file:
        names = {source.file_name for source in file["patches"].virtual_sources()}
    assert names == set(pd.read_parquet(results / "manifest.parquet")["shard"])  # relative


def test_combined_file_reads_after_moving_the_results_folder(results, tmp_path, monkeypatch):
    combine(results)
    moved = tmp_path / "elsewhere" / "moved"
    shutil.move(results, moved)
    monkeypatch.chdir(tmp_path)  # neither the old nor the new folder
    assert_combined_equals_shards(moved)
    assert missing_sources(moved / "patches_combined.h5") == []


def test_a_missing_shard_reads_as_zeros_and_is_reported(results):
    combined = combine(results)
    manifest = pd.read_parquet(results / "manifest.parquet")
    lost = manifest["shard"].iloc[0]
    (results / lost).unlink()
    assert missing_sources(combined) == [lost]
    with h5py.File(combined, "r") as file:
        assert not file["patches"][0].any()
    with pytest.raises(FileNotFoundError, match="1 shards missing"):
        open_combined(combined)


READ_UNDER_A_LIMIT = """
import resource, sys
from embedpatch.combine import open_combined
resource.setrlimit(resource.RLIMIT_NOFILE, (40, int(sys.argv[2])))
with open_combined(sys.argv[1]) as file:
    patches = file["patches"][()]
blank = int((patches.reshape(len(patches), -1) == 0).all(1).sum())
print(resource.getrlimit(resource.RLIMIT_NOFILE)[0], blank)
"""


@pytest.mark.parametrize("hard", [200, 60])
def test_open_combined_makes_room_for_every_shard_or_refuses(results, hard):
    combined = combine(results)
    shards = pd.read_parquet(results / "manifest.parquet")["shard"].nunique()
    assert 40 < shards + 64 <= 200  # a limit of 40 files cannot hold every source open
    result = subprocess.run(
        [sys.executable, "-c", READ_UNDER_A_LIMIT, str(combined), str(hard)],
        capture_output=True,
        text=True,
        check=False,
    )
    if hard == 200:
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [str(shards + 64), "0"]  # raised; no patch left blank
    else:
        assert "needs" in result.stderr and "ulimit" in result.stderr


def test_open_combined_reads_without_chunk_cache_or_locking(results):
    with open_combined(combine(results)) as file:
        assert file.id.get_access_plist().get_cache()[2] == 0  # chunk cache bytes
        assert file["patches"][0].any()


def test_a_manifest_not_matching_its_shards_is_refused(results):
    manifest = pd.read_parquet(results / "manifest.parquet")
    manifest.drop(index=1).to_parquet(results / "manifest.parquet")
    with pytest.raises(ValueError, match="not its patches"):
        combine_shards(str(results / "manifest.parquet"), str(results / "patches_combined.h5"))
    assert not (results / "patches_combined.h5").exists()


@pytest.mark.workflow
def test_workflow_builds_splits_and_combined_file(demo_run):
    results = demo_run / "results"
    assert_combined_equals_shards(results)
    train = PatchDataset(results, split="train")
    manifest = pd.read_parquet(results / "manifest.parquet")
    assert 0 < len(train) <= len(manifest)
    assert (results / "logs/make_splits.log").is_file()


def test_an_empty_manifest_gives_an_empty_combined_file(results):
    manifest = pd.read_parquet(results / "manifest.parquet")
    manifest.iloc[:0].to_parquet(results / "manifest.parquet")
    assert combine(results) and len(PatchDataset(results)) == 0
    with open_combined(results / "patches_combined.h5") as file:
        assert file["patches"].shape[0] == 0 and len(file["manifest/shard"]) == 0
