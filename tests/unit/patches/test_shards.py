"""HDF5 shards: round trips, layout, reproducibility, atomic writes under SIGKILL, truncation."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import pytest

from embedpatch.patches.extract import (
    INFO_COLUMNS,
    INFO_INT_COLUMNS,
    REJECTION_COLUMNS,
    REJECTION_INT_COLUMNS,
    typed_table,
)
from embedpatch.patches.shards import (
    COMPRESSIONS,
    PLUGIN_COMPRESSIONS,
    SCHEMA_VERSION,
    ExamPatches,
    ShardError,
    column_data,
    read_shard,
    read_shard_tables,
    shard_is_complete,
    write_shard,
)

TESTS = Path(__file__).resolve().parent
ATTRS = {"config_hash": "0123abcd", "config": {"patches": {"size": 32, "padding": ["tissue"]}}}


def info_record(index: int, size: int) -> dict:
    negative = index % 3 == 2
    return {
        "index": index,
        "empi_anon": 12345678,
        "acc_anon": 9876543210987654,
        "anon_dicom_path": f"/mnt/x/é{index % 2}.dcm",
        "FinalImageType": "2D",
        "ImageLateralityFinal": None if index == 1 else "L",
        "ViewPosition": "CC",
        "roi_index": -1 if negative else index,
        "frame": -1,
        "ymin": index,
        "xmin": 2 * index,
        "ymax": index + size,
        "xmax": 2 * index + size,
        "patch_y0": index - 3,
        "patch_x0": 2 * index - 4,
        "patch_size": size,
        "padding": "tissue",
        "label": "negative" if negative else "roi",
    }


def make_exam(count: int, size: int = 32, seed: int = 0, rejected: int = 1) -> ExamPatches:
    """An exam of `count` 12-bit noise patches over a smooth ramp, with one rejection."""
    rng = np.random.default_rng(seed)
    ramp = np.add.outer(np.arange(size), np.arange(size)) * 8
    patches = (ramp + rng.integers(0, 64, (count, size, size))).astype(np.uint16)
    rejection = {
        "empi_anon": 12345678,
        "acc_anon": 9876543210987654,
        "anon_dicom_path": "/mnt/x/bad.dcm",
        "FinalImageType": "cview",
        "roi_index": -1,
        "reason": "image_unreadable",
        "detail": "bad.dcm: not a readable DICOM file",
        "n_rois": 2,
    }
    return ExamPatches(
        acc_anon=9876543210987654,
        empi_anon=12345678,
        patches=patches,
        info=typed_table(
            [info_record(i, size) for i in range(count)], INFO_COLUMNS, INFO_INT_COLUMNS
        ),
        rejections=typed_table([rejection] * rejected, REJECTION_COLUMNS, REJECTION_INT_COLUMNS),
    )


def assert_same_exam(shard, exam: ExamPatches) -> None:
    np.testing.assert_array_equal(shard.patches, exam.patches)
    assert shard.patches.dtype == exam.patches.dtype
    pd.testing.assert_frame_equal(shard.info, exam.info)
    pd.testing.assert_frame_equal(shard.rejections, exam.rejections)


@pytest.mark.parametrize("compression", sorted(COMPRESSIONS))
def test_round_trip_of_patches_tables_and_attributes(tmp_path, compression):
    exam = make_exam(7)
    path = tmp_path / "exam.h5"
    write_shard(path, exam, ATTRS, compression)
    assert shard_is_complete(path)
    shard = read_shard(path)
    assert_same_exam(shard, exam)
    assert shard.info["ImageLateralityFinal"].isna().tolist() == [False, True] + [False] * 5
    attrs = shard.attrs
    assert attrs["config"] == ATTRS["config"] and attrs["config_hash"] == ATTRS["config_hash"]
    assert attrs["compression"] == compression and attrs["schema_version"] == SCHEMA_VERSION
    assert (attrs["n_patches"], attrs["n_roi_patches"], attrs["n_negative_patches"]) == (7, 5, 2)
    assert attrs["n_rejected_images"] == 1 and attrs["acc_anon"] == 9876543210987654
    assert attrs["complete"] is True
    assert {"numpy", "pydicom", "h5py", "hdf5plugin", "pylibjpeg-openjpeg", "embedpatch"} <= set(
        attrs["package_versions"]
    )


def test_tables_are_read_without_the_patches(tmp_path):
    exam = make_exam(4)
    write_shard(tmp_path / "exam.h5", exam, ATTRS)
    info, rejections, attrs = read_shard_tables(tmp_path / "exam.h5")
    pd.testing.assert_frame_equal(info, exam.info)
    pd.testing.assert_frame_equal(rejections, exam.rejections)
    assert attrs["n_patches"] == 4


def test_layout_one_patch_per_chunk_with_shuffle(tmp_path):
    path = tmp_path / "exam.h5"
    write_shard(path, make_exam(3), ATTRS, "gzip")
    with h5py.File(path, "r") as file:
        patches = file["patches"]
        assert patches.chunks == (1, 32, 32) and patches.maxshape == (None, 32, 32)
        assert patches.compression == "gzip" and patches.shuffle
        info = file["info"]
        assert isinstance(info, h5py.Dataset) and info.shape == (3,)
        assert list(info.dtype.names) == INFO_COLUMNS
        assert info.dtype["acc_anon"] == np.int64
        assert h5py.check_string_dtype(info.dtype["padding"]).encoding == "utf-8"
        assert isinstance(file["rejected"], h5py.Dataset)
        assert len(file) == 3  # patches, info, rejected: no object per column
        assert file.attrs["complete"]


def write_version_2_tables(path: Path) -> None:
    """Rewrite a shard's tables as schema version 2 kept them: a group of columns each."""
    info, rejected, _ = read_shard_tables(path)
    with h5py.File(path, "r+", locking=False) as file:
        for name, table in (("info", info), ("rejected", rejected)):
            del file[name]
            group = file.create_group(name)
            group.attrs["columns"] = json.dumps(list(table.columns))
            for column in table.columns:
                data, dtype = column_data(table[column])
                group.create_dataset(column, data=data, dtype=dtype)
        file.attrs["schema_version"] = 2


def test_a_version_2_shard_is_still_complete_and_read(tmp_path):
    exam = make_exam(5, rejected=1)
    path = tmp_path / "old.h5"
    write_shard(path, exam, ATTRS)
    write_version_2_tables(path)
    with h5py.File(path, "r") as file:
        assert isinstance(file["info"], h5py.Group)
    assert shard_is_complete(path)
    shard = read_shard(path)
    assert_same_exam(shard, exam)
    assert shard.attrs["schema_version"] == 2


def test_a_shard_of_an_unknown_version_is_refused(tmp_path):
    path = tmp_path / "future.h5"
    write_shard(path, make_exam(2), ATTRS)
    with h5py.File(path, "r+", locking=False) as file:
        file.attrs["schema_version"] = SCHEMA_VERSION + 1
    assert not shard_is_complete(path)
    with pytest.raises(ShardError, match="schema version"):
        read_shard(path)


def test_empty_shard_is_valid(tmp_path):
    exam = make_exam(0, rejected=2)
    path = tmp_path / "empty.h5"
    write_shard(path, exam, ATTRS)
    assert shard_is_complete(path)
    shard = read_shard(path)
    assert shard.patches.shape == (0, 32, 32)
    assert_same_exam(shard, exam)
    assert shard.attrs["n_patches"] == 0 and shard.attrs["n_rejected_images"] == 2


def test_same_exam_gives_a_byte_identical_file(tmp_path):
    digests = set()
    for name in ("a.h5", "b.h5"):
        write_shard(tmp_path / name, make_exam(5), ATTRS)
        digests.add(hashlib.sha256((tmp_path / name).read_bytes()).hexdigest())
        time.sleep(1.1)  # a timestamp, if any were stored, would now differ
    assert len(digests) == 1


def test_failed_write_leaves_the_previous_shard_and_no_temporary(tmp_path):
    path = tmp_path / "exam.h5"
    write_shard(path, make_exam(2), ATTRS)
    broken = make_exam(3)
    broken.info["ymin"] = broken.info["ymin"].astype(float)  # floats are refused mid-write
    with pytest.raises(TypeError):
        write_shard(path, broken, ATTRS)
    assert [entry.name for entry in tmp_path.iterdir()] == ["exam.h5"]
    assert_same_exam(read_shard(path), make_exam(2))


@pytest.mark.parametrize("attrs", [{"config": {}}, {**ATTRS, "n_patches": 3}])
def test_attributes_must_be_complete_and_not_clash(tmp_path, attrs):
    with pytest.raises(ValueError, match="config_hash"):
        write_shard(tmp_path / "x.h5", make_exam(1), attrs)


WRITER = """
from test_shards import ATTRS, make_exam
from embedpatch.patches.shards import write_shard
write_shard({path!r}, make_exam(600, size=256, seed=1), ATTRS, "gzip")
"""


def kill_mid_write(path: Path) -> Path:
    """Start a process writing a large shard to `path`, SIGKILL it once its temporary file
    has grown past 1 MB, and return that temporary file."""
    code = WRITER.format(path=str(path))
    writer = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, cwd=TESTS)
    temporary = path.with_name(f".{path.name}.{writer.pid}.tmp")
    deadline = time.monotonic() + 60
    while not (temporary.exists() and temporary.stat().st_size > 1 << 20):
        assert writer.poll() is None, f"writer ended early: {writer.stderr.read().decode()}"
        assert time.monotonic() < deadline, "writer never started writing"
        time.sleep(0.005)
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    writer.stderr.close()
    assert writer.returncode == -signal.SIGKILL
    return temporary


@pytest.mark.slow
def test_killed_writer_leaves_no_shard_under_the_final_name(tmp_path):
    path = tmp_path / "exam.h5"
    temporary = kill_mid_write(path)
    assert not path.exists()
    assert not shard_is_complete(temporary)
    with pytest.raises(ShardError):
        read_shard(temporary)


@pytest.mark.slow
def test_killed_writer_leaves_the_previous_shard_intact(tmp_path):
    path = tmp_path / "exam.h5"
    previous = make_exam(4)
    write_shard(path, previous, ATTRS)
    kill_mid_write(path)
    assert shard_is_complete(path)
    assert_same_exam(read_shard(path), previous)


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.999])
def test_truncated_shard_is_detected(tmp_path, keep):
    path = tmp_path / "exam.h5"
    write_shard(path, make_exam(20, size=64), ATTRS)
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    assert not shard_is_complete(path)
    for read in (read_shard, read_shard_tables):
        with pytest.raises(ShardError):
            read(path)


def test_missing_foreign_and_unfinished_files_are_not_shards(tmp_path):
    foreign, unfinished = tmp_path / "foreign.h5", tmp_path / "unfinished.h5"
    foreign.write_bytes(b"not hdf5 at all" * 100)
    with h5py.File(unfinished, "w") as file:
        file.create_dataset("patches", data=np.zeros((1, 4, 4), np.uint16))
    for path in (tmp_path / "missing.h5", foreign, unfinished):
        assert not shard_is_complete(path)
        for read in (read_shard, read_shard_tables):
            with pytest.raises(ShardError):
                read(path)


READER = """
import sys, h5py
for path in sys.argv[1:]:
    try:
        with h5py.File(path, "r") as file:
            file["patches"][0]
        print("ok")
    except OSError:
        print("needs plugin")
"""


def test_only_the_plugin_compressions_need_hdf5plugin_to_read(tmp_path):
    names = sorted(COMPRESSIONS)
    paths = [tmp_path / f"{name}.h5" for name in names]
    for name, path in zip(names, paths, strict=True):
        write_shard(path, make_exam(1), ATTRS, name)
    env = {key: value for key, value in os.environ.items() if key != "HDF5_PLUGIN_PATH"}
    result = subprocess.run(
        [sys.executable, "-c", READER, *map(str, paths)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    needs = {
        name for name, line in zip(names, result.stdout.split("\n"), strict=False) if line != "ok"
    }
    assert needs == PLUGIN_COMPRESSIONS
