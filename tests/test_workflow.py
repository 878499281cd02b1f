"""The demo pipeline run end to end by Snakemake itself, in a temporary folder."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.workflow


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run the project's workflow with `workdir` as its working directory."""
    command = [
        sys.executable,
        "-m",
        "snakemake",
        "--snakefile",
        str(ROOT / "Snakefile"),
        "--configfile",
        str(ROOT / "config.yaml"),
        "--directory",
        str(workdir),
        "--cores",
        "2",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, check=False)


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("demo_run")
    result = snakemake(workdir)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir


def test_demo_run_writes_the_filtered_table(demo_run):
    filtered = pd.read_parquet(demo_run / "results/metadata/filtered.parquet")
    summary = json.loads((demo_run / "results/metadata/filter_summary.json").read_text())
    assert len(filtered) == summary["rows_kept"] > 0
    assert set(filtered["FinalImageType"]) <= {"2D", "3D", "cview"}
    assert filtered["dicom_path"].map(lambda p: (demo_run / p).is_file() or Path(p).is_file()).any()


def test_demo_run_logs_every_rule(demo_run):
    logs = sorted(path.name for path in (demo_run / "results/logs").iterdir())
    assert "demo_cohort.log" in logs
    assert "filter_metadata.log" in logs


def test_rerun_with_nothing_changed_runs_nothing(demo_run):
    result = snakemake(demo_run, "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "Nothing to be done" in result.stdout + result.stderr


def test_demo_run_accounts_for_every_roi(demo_run):
    summary = json.loads((demo_run / "results/rois/roi_summary.json").read_text())
    accepted = pd.read_parquet(demo_run / "results/rois/rois.parquet")
    rejected = pd.read_parquet(demo_run / "results/rois/rejected.parquet")
    assert summary["rois_declared"] == len(accepted) + rejected["n_rois"].sum() > 0
    assert summary["rows_in"] == (
        summary["rows_with_accepted_rois"]
        + summary["rows_all_rois_rejected"]
        + summary["rows_without_rois"]
    )
    truth = json.loads((demo_run / "results/demo/truth.json").read_text())
    expected = {(r["anon_dicom_path"], r["reason"]) for r in truth if r["kind"] == "reject"}
    assert expected == set(zip(rejected["anon_dicom_path"], rejected["reason"], strict=True))
