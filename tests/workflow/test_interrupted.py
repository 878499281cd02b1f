"""A run killed with SIGKILL at the worst moments, then resumed: nothing partial survives.

The workflow runs in a subprocess (its own process group) and is killed, with every job
it started, as soon as ROI validation has written its first output, as soon as an
extraction job writes a shard (its temporary file, or the shard), and as soon as the
manifest is being written. After each kill every file under its final name must be
whole; `--unlock` and `--rerun-incomplete` then finish the run, and every shard equals
the one an uninterrupted extraction job writes (shards are byte-reproducible).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml

from embedpatch.config import validate_config
from embedpatch.patches.batch_job import extract_exam_shard
from embedpatch.patches.plan import SpecInputs, extraction_settings, load_exam_specs
from embedpatch.patches.shards import shard_is_complete
from helpers.user_mode import check_outputs, clean_rows, set_up_run, snakemake, snakemake_command

pytestmark = pytest.mark.workflow

TARGET = "results/manifest.parquet"
EXAMS = 4  # extraction jobs of the run
POLL_S = 0.002


def temporaries(folder: Path) -> list[Path]:
    return list(folder.glob(".*.tmp"))


def kill_when(workdir: Path, moment: Callable[[], bool], timeout_s: float = 300) -> bool:
    """Run the workflow and SIGKILL its process group once `moment()` holds; whether it was
    killed (False: it finished first)."""
    process = subprocess.Popen(
        snakemake_command(workdir, "--rerun-incomplete", TARGET),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout_s
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if moment():
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
                return True
            time.sleep(POLL_S)
        assert process.returncode == 0, "the run failed or timed out before the moment came"
        return False
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        assert_group_gone(process.pid)


def assert_group_gone(group: int) -> None:
    """No process of the killed group survives (jobs included)."""
    for _ in range(500):
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.01)
    pytest.fail(f"processes of group {group} survived the kill")


def assert_final_files_whole(results: Path) -> None:
    """Every output under its final name reads back whole."""
    for path in results.rglob("*"):
        if path.name.startswith(".") or not path.is_file():
            continue
        if path.suffix == ".h5":
            assert shard_is_complete(path), path
        elif path.suffix == ".parquet":
            pq.read_table(path)
        elif path.suffix == ".json":
            json.loads(path.read_text())
        elif path.suffix == ".csv":
            pd.read_csv(path)


@pytest.fixture(scope="module")
def interrupted(demo_cohort, tmp_path_factory) -> tuple[Path, dict[str, bool]]:
    """A run killed three times, then finished; which kills hit a running workflow."""
    clean = clean_rows(demo_cohort)
    exams = list(dict.fromkeys(clean["acc_anon"]))[:EXAMS]
    workdir = set_up_run(
        tmp_path_factory.mktemp("interrupted"),
        clean[clean["acc_anon"].isin(exams)],
        demo_cohort / "images",
    )
    results = workdir / "results"
    moments = {
        "validation outputs": lambda: (
            (results / "rois/rois.parquet").exists() or bool(temporaries(results / "rois"))
        ),
        "shard writes": lambda: (
            bool(temporaries(results / "patches")) or any((results / "patches").glob("*.h5"))
        ),
        "manifest writes": lambda: bool(temporaries(results)) or (workdir / TARGET).exists(),
    }
    killed = {}
    for name, moment in moments.items():
        killed[name] = kill_when(workdir, moment)
        assert_final_files_whole(results)
        assert snakemake(workdir, "--unlock").returncode == 0
    result = snakemake(workdir, "--rerun-incomplete", TARGET)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir, killed


def test_kills_hit_a_running_workflow(interrupted):
    _, killed = interrupted
    assert all(killed.values()), killed


def test_the_resumed_run_is_complete_and_consistent(interrupted):
    workdir, _ = interrupted
    manifest, _ = check_outputs(workdir)
    assert len(manifest) > 0
    assert_final_files_whole(workdir / "results")
    dry = snakemake(workdir, "--dry-run", TARGET)
    assert "Nothing to be done" in dry.stdout + dry.stderr


def test_every_shard_equals_an_uninterrupted_one(interrupted, tmp_path):
    workdir, _ = interrupted
    config = validate_config(yaml.safe_load((workdir / "config.yaml").read_text()))
    rois = workdir / "results/rois"
    specs = load_exam_specs(
        SpecInputs.from_config(
            config,
            str(rois / "rois.parquet"),
            str(rois / "validation_rejected.parquet"),
            str(workdir / "results/metadata/filtered.parquet"),
        )
    )
    shards = sorted((workdir / "results/patches").glob("*.h5"))
    assert [path.stem for path in shards] == sorted(specs)
    for path in shards:
        fresh = tmp_path / path.name
        extract_exam_shard(specs[path.stem], extraction_settings(config), str(fresh))
        assert fresh.read_bytes() == path.read_bytes(), path.name
