"""Atomic writes: the final name holds a complete file or nothing."""

import json
import os

import pytest

from embedpatch.io.atomic import atomic_output, write_json


def test_atomic_output_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.json"
    with atomic_output(target) as temporary:
        temporary.write_text("new")
        assert not target.exists()
    assert target.read_text() == "new"
    with pytest.raises(RuntimeError), atomic_output(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_atomic_output_clears_what_a_killed_writer_left(tmp_path):
    target = tmp_path / "exam.h5"
    left_behind = tmp_path / ".exam.h5.4242.tmp"
    left_behind.write_text("half a shard")
    other = tmp_path / ".other.h5.4242.tmp"
    other.write_text("another file's temporary")
    with atomic_output(target) as temporary:
        temporary.write_text("whole")
    assert not left_behind.exists()
    assert other.exists()
    assert target.read_text() == "whole"


def test_write_json_is_indented_with_one_trailing_newline(tmp_path):
    target = tmp_path / "summary.json"
    write_json(target, {"b": 1, "a": [2]})
    text = target.read_text()
    assert text.endswith("}\n") and not text.endswith("\n\n")
    assert json.loads(text) == {"b": 1, "a": [2]}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_a_folder_is_listed_once_per_process_however_many_files_are_written(tmp_path, monkeypatch):
    listed = []
    scandir = os.scandir
    monkeypatch.setattr(os, "scandir", lambda folder: listed.append(folder) or scandir(folder))
    for number in range(50):
        write_json(tmp_path / f"{number}.json", number)
    assert listed == [tmp_path]
    assert sorted(path.name for path in tmp_path.iterdir()) == sorted(
        f"{number}.json" for number in range(50)
    )
