"""The combined file: an index whose rows read exactly the shards' patches, movable, with the
manifest; a missing or replaced shard is an error, never other pixels; shards of several
dtypes served in their lossless common dtype."""

import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest
from test_dataset import MIXED_EXAMS, exam_dtype, reference, write_mixed_results, write_results

from embedpatch.patches.shards import (
    ExamPatches,
    LossyCastError,
    ShardError,
    common_dtype,
    read_shard,
    write_shard,
)
from embedpatch.patches.shards import (
    read_column_group as _read_table,
)
from embedpatch.training import MissingShardError, StaleShardError
from embedpatch.training.combined import combine_shards, missing_shards, open_combined
from embedpatch.training.dataset import PatchDataset


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
    with open_combined(results / "patches_combined.h5") as file:
        assert "patches" not in file.file and file.file.attrs["layout"] == "index"
        combined = file["patches"][()]
        assert combined.dtype == file["patches"].dtype == file.dtype
        columns = _read_table(file["manifest"])
    assert list(columns) == list(manifest.columns)
    for name in manifest.columns:  # numbers with gaps are stored as float64, gaps as NaN
        assert values(columns[name]) == values(manifest[name]), name
    expected = {shard: read_shard(results / shard).patches for shard in manifest["shard"].unique()}
    assert combined.shape[0] == len(manifest) > 0
    rows = zip(manifest["shard"], manifest["index"], strict=True)
    for position, (shard, index) in enumerate(rows):
        np.testing.assert_array_equal(combined[position], expected[shard][index])


@pytest.fixture(scope="module")
def written_results(tmp_path_factory) -> Path:
    """Shards and a manifest of 12 patients, written once for the module."""
    return write_results(tmp_path_factory.mktemp("written") / "results", n_patients=12)


@pytest.fixture
def results(written_results, tmp_path) -> Path:
    """A copy of `written_results` each test may change."""
    return Path(shutil.copytree(written_results, tmp_path / "results"))


def test_combined_file_equals_the_shards_patch_by_patch(results):
    combine(results)
    assert_combined_equals_shards(results)
    manifest = pd.read_parquet(results / "manifest.parquet")
    with h5py.File(results / "patches_combined.h5", "r") as file:
        shards = _read_table(file["shards"])
    assert list(shards["name"]) == list(manifest["shard"].unique())  # relative, in order
    assert list(shards["count"]) == list(manifest.groupby("shard", sort=False).size())
    assert list(shards["start"]) == [0, *np.cumsum(shards["count"])[:-1]]
    digests = manifest.groupby("shard", sort=False)["patches_sha256"].first()
    assert list(shards["patches_sha256"]) == list(digests)


def test_combined_file_reads_after_moving_the_results_folder(results, tmp_path, monkeypatch):
    combine(results)
    moved = tmp_path / "elsewhere" / "moved"
    shutil.move(results, moved)
    monkeypatch.chdir(tmp_path)  # neither the old nor the new folder
    assert_combined_equals_shards(moved)
    assert missing_shards(moved / "patches_combined.h5") == []


def replace_with_other_pixels(path: Path) -> None:
    """Rewrite the shard at `path` with patches of the same shape and dtype, other values,
    and everything else as it was (what a rerun on changed images, or a copy, would do)."""
    shard = read_shard(path)
    exam = ExamPatches(
        acc_anon=shard.attrs["acc_anon"],
        empi_anon=shard.attrs["empi_anon"],
        patches=(shard.patches + 1).astype(shard.patches.dtype),
        info=shard.info,
        rejections=shard.rejections,
    )
    attrs = {name: shard.attrs[name] for name in ("config_hash", "config")}
    write_shard(path, exam, attrs)


def damaged_results(results: Path) -> tuple[str, str, pd.DataFrame]:
    """Build the combined file, then delete one shard and replace another: their names
    and the manifest."""
    combine(results)
    manifest = pd.read_parquet(results / "manifest.parquet")
    lost, replaced = manifest["shard"].unique()[:2]
    (results / lost).unlink()
    replace_with_other_pixels(results / replaced)
    return lost, replaced, manifest


def test_a_missing_or_replaced_shard_is_an_error_never_other_pixels(results):
    lost, replaced, manifest = damaged_results(results)
    assert missing_shards(results / "patches_combined.h5") == [lost]
    shards = {
        shard: read_shard(results / shard).patches
        for shard in manifest["shard"].unique()
        if shard != lost
    }
    dataset = PatchDataset(results)
    with open_combined(results / "patches_combined.h5") as file:
        patches = file["patches"]
        for position, (shard, index) in enumerate(
            zip(manifest["shard"], manifest["index"], strict=True)
        ):
            if shard == lost:
                with pytest.raises(MissingShardError, match=f"{shard}: shard missing"):
                    patches[position]
                with pytest.raises(MissingShardError, match=shard):
                    dataset.patch(position)
            elif shard == replaced:
                with pytest.raises(StaleShardError, match=f"{shard}: not the shard"):
                    patches[position]
                with pytest.raises(StaleShardError, match="rerun snakemake"):
                    dataset[position]
            else:  # unaffected rows: exactly the shard's pixels
                np.testing.assert_array_equal(patches[position], shards[shard][index])
                np.testing.assert_array_equal(dataset.patch(position), shards[shard][index])
        with pytest.raises(MissingShardError):
            patches[:]  # a slice over the lost shard fails whole
    dataset.close()


def test_a_shard_replaced_after_it_was_opened_reads_as_it_was(results):
    combined = combine(results)
    manifest = pd.read_parquet(results / "manifest.parquet")
    shard = manifest["shard"].iloc[0]
    expected = read_shard(results / shard).patches
    with open_combined(combined, cache_size=1) as file:
        patches = file["patches"]
        np.testing.assert_array_equal(patches[0], expected[0])  # verified, now open
        replace_with_other_pixels(results / shard)
        np.testing.assert_array_equal(patches[0], expected[0])  # the open file is the old one
        last = len(patches) - 1
        patches[last]  # another shard: the first one is closed (cache_size=1)
        with pytest.raises(StaleShardError):
            patches[0]  # reopened: the new file is refused


READ_UNDER_A_LIMIT = """
import resource, sys
from embedpatch.training.combined import open_combined
resource.setrlimit(resource.RLIMIT_NOFILE, (12, 12))
with open_combined(sys.argv[1], cache_size=4) as file:
    patches = file["patches"][::-1]
print(len(patches), int((patches.reshape(len(patches), -1) == 0).all(1).sum()))
"""


def test_every_patch_reads_under_a_small_limit_of_open_files(results):
    combined = combine(results)
    manifest = pd.read_parquet(results / "manifest.parquet")
    assert manifest["shard"].nunique() > 12  # more shards than the process may open
    result = subprocess.run(
        [sys.executable, "-c", READ_UNDER_A_LIMIT, str(combined)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == [str(len(manifest)), "0"]  # every row, none blank


def test_open_combined_reads_without_chunk_cache_or_locking(results):
    with open_combined(combine(results)) as file:
        assert file["patches"][0].any()
        shard = file.shards.patches(0).file
        assert shard.id.get_access_plist().get_cache()[2] == 0  # chunk cache bytes


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


# ---- shards of several dtypes -------------------------------------------------------------


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    """Shards cut from real DICOMs: uint16, int16 (one big-endian), uint8, and exams mixing
    them (int32, uint16); see test_dataset.MIXED_EXAMS."""
    results = write_mixed_results(tmp_path_factory.mktemp("mixed"))
    combine(results)
    return results


def test_mixed_shards_combine_into_their_lossless_common_dtype(mixed):
    assert_combined_equals_shards(mixed)
    manifest = pd.read_parquet(mixed / "manifest.parquet")
    with open_combined(mixed / "patches_combined.h5") as file:
        patches = file["patches"]
        assert patches.dtype == np.int32  # int16 with uint16 (and uint8)
        names = file["manifest/dtype"].asstr()[()]
        assert len(file["shards/name"]) == len(MIXED_EXAMS)
        for position, row in enumerate(manifest.to_dict("records")):
            patch, expected = patches[position], reference(mixed, row)
            np.testing.assert_array_equal(patch, expected, err_msg=str(row))
            stored = patch.astype(names[position])  # the shard's own dtype, exactly
            assert stored.dtype == np.dtype(row["dtype"]) == exam_dtype(mixed, row["acc_anon"])
            shard = read_shard(mixed / row["shard"]).patches
            np.testing.assert_array_equal(stored, shard[row["index"]])
            unconverted = patches.astype(names[position])[position]  # read as stored
            assert unconverted.dtype == stored.dtype
            np.testing.assert_array_equal(unconverted, shard[row["index"]])
            assert np.array_equal(patch.astype(expected.dtype), expected)
    assert set(names) == {"uint16", "int16", "uint8", "int32"}


@pytest.mark.parametrize(
    ("dtypes", "expected"),
    [(["uint8"], np.uint8), (["uint8", "uint16"], np.uint16), (["int16", "uint8"], np.int16)],
)
def test_the_combined_dtype_is_the_narrowest_holding_every_shard(mixed, dtypes, expected):
    manifest = pd.read_parquet(mixed / "manifest.parquet")
    name = "_".join(dtypes)
    manifest[manifest["dtype"].isin(dtypes)].to_parquet(mixed / f"{name}.parquet")
    combine_shards(str(mixed / f"{name}.parquet"), str(mixed / f"{name}.h5"))
    with open_combined(mixed / f"{name}.h5") as file:
        assert file["patches"].dtype == expected
        assert set(file["manifest/dtype"].asstr()[()]) == set(dtypes)


def test_a_manifest_dtype_other_than_the_shards_is_refused(mixed, tmp_path):
    manifest = pd.read_parquet(mixed / "manifest.parquet")
    manifest.loc[manifest["dtype"] == "int16", "dtype"] = "uint16"
    manifest.to_parquet(mixed / "stale.parquet")
    with pytest.raises(ValueError, match="patches of dtype int16, the manifest says"):
        combine_shards(str(mixed / "stale.parquet"), str(tmp_path / "combined.h5"))
    assert not (tmp_path / "combined.h5").exists()


def test_the_common_dtype_is_lossless_or_refused():
    assert common_dtype(["uint8", "uint16"]) == np.uint16
    assert common_dtype(["uint16", ">i2"]) == np.int32
    assert common_dtype([">u2"]).isnative
    assert common_dtype(["int32", "float32"]) == np.float64
    with pytest.raises(LossyCastError, match="uint64"):
        common_dtype(["uint64", "int64"])  # numpy's result type: float64, 53 bits


def test_shards_without_a_lossless_common_dtype_are_refused(results):
    manifest = pd.read_parquet(results / "manifest.parquet")
    for shard, dtype in zip(manifest["shard"].unique()[:2], [np.uint64, np.int64], strict=True):
        stored = read_shard(results / shard)
        acc, empi = stored.attrs["acc_anon"], stored.attrs["empi_anon"]
        patches = stored.patches.astype(dtype)
        exam = ExamPatches(acc, empi, patches, stored.info, stored.rejections)
        write_shard(results / shard, exam, {"config_hash": "test", "config": {}})
    manifest = manifest.drop(columns="dtype")  # a manifest from before the dtype column
    manifest.to_parquet(results / "manifest.parquet")
    with pytest.raises(LossyCastError, match="int64"):
        combine_shards(str(results / "manifest.parquet"), str(results / "patches_combined.h5"))
    assert not (results / "patches_combined.h5").exists()


def test_shapes_come_from_the_manifest_and_a_sample_of_shards_is_opened(results):
    manifest = pd.read_parquet(results / "manifest.parquet")
    shards = list(manifest["shard"].unique())
    assert len(shards) > 3
    # A shard whose header is gone (size kept) but which is not in the sample: the file
    # is built from the manifest alone; one opened in the sample is refused.
    damaged = results / shards[0]
    with open(damaged, "r+b") as file:
        file.write(b"\0" * 64)
    combined = str(results / "patches_combined.h5")
    assert combine_shards(str(results / "manifest.parquet"), combined, sample=0)["n_shards"] == len(
        shards
    )
    with pytest.raises(ShardError, match="cannot open as HDF5"):
        combine_shards(str(results / "manifest.parquet"), combined, sample=len(shards))


def test_a_missing_shard_is_refused_before_writing(results):
    manifest = pd.read_parquet(results / "manifest.parquet")
    (results / manifest["shard"].iloc[-1]).unlink()
    with pytest.raises(FileNotFoundError, match="1 shards missing"):
        combine_shards(str(results / "manifest.parquet"), str(results / "combined.h5"), sample=0)
    assert not (results / "combined.h5").exists()


class CombinedRows:
    """A map-style dataset over the combined file's rows, as a user would write one."""

    def __init__(self, path: Path) -> None:
        self.file = open_combined(path, cache_size=2)

    def __len__(self) -> int:
        return len(self.file["patches"])

    def __getitem__(self, position: int) -> tuple[np.ndarray, int]:
        return self.file["patches"][position].astype(np.int32), position


@pytest.mark.slow
@pytest.mark.parametrize("context", ["fork", "spawn", "forkserver"])
def test_torch_loader_workers_read_the_combined_file_exactly(results, context):
    """Each worker opens its own shards (forked: it drops the parent's copies; spawned:
    the file is pickled without them), and a deleted shard fails the loader."""
    torch = pytest.importorskip("torch")
    combine(results)
    rows = CombinedRows(results / "patches_combined.h5")
    expected = rows.file["patches"][()]  # the parent holds shards open
    loader = torch.utils.data.DataLoader(
        rows, batch_size=7, num_workers=2, multiprocessing_context=context
    )
    batches = list(loader)
    patches = torch.cat([patch for patch, _ in batches]).numpy()
    assert torch.cat([position for _, position in batches]).tolist() == list(range(len(rows)))
    np.testing.assert_array_equal(patches, expected)
    manifest = pd.read_parquet(results / "manifest.parquet")
    (results / manifest["shard"].iloc[-1]).unlink()
    with pytest.raises(MissingShardError):
        list(loader)  # raised in a worker, re-raised here
    rows.file.close()
