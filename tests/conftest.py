"""Shared fixtures: a small synthetic demo cohort, and one demo pipeline run, per session."""

from pathlib import Path

import pytest

from embedpatch.demo.cohort import write_demo_cohort
from helpers.snakemake_runner import run_snakemake

pytest_plugins = ["helpers.s3_fixtures", "helpers.slurm_fixtures"]

DEMO_PARAMS = {"seed": 7, "n_patients": 4, "scale": 0.1, "dbt_frames": 8}


@pytest.fixture(scope="session")
def demo_params() -> dict:
    """The arguments `demo_cohort` was generated with."""
    return dict(DEMO_PARAMS)


@pytest.fixture(scope="session")
def demo_cohort(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Folder of a small demo cohort: tables/, images/, truth.json (see DEMO_PARAMS)."""
    out_dir = tmp_path_factory.mktemp("demo_cohort")
    write_demo_cohort(out_dir, **DEMO_PARAMS)
    return out_dir


@pytest.fixture(scope="session")
def demo_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder where Snakemake ran the whole default workflow (config.yaml: the demo).

    Shared by every test reading its outputs: tests that change files run their own.
    """
    workdir = tmp_path_factory.mktemp("demo_run")
    result = run_snakemake(workdir)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir
