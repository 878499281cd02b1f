"""The demo pipeline through workflow/profiles/slurm on a real SLURM cluster.

Needs a cluster that answers on this machine (`.ci/slurm-up.sh` sets up a one-node one
as root); skips, saying why, when there is none. The profile is used as it is: the
only command-line additions are test conveniences (status checks from the first
second on, SLURM logs of successful jobs kept). The run stops at the manifest; its
shards and tables must equal those of the session's local demo run (`demo_run`: the same
config but the batch count, which no shard or table depends on).
"""

import ast
import re
import signal
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from embedpatch.patches.shards import read_shard
from helpers.project import ROOT
from helpers.snakemake_runner import DEMO_CONFIG, snakemake_command

PROFILE = ROOT / "workflow" / "profiles" / "slurm"
TARGET = "results/manifest.parquet"
# Rules every run up to the manifest submits, by their SLURM log folder.
SUBMITTED = {
    "rule_demo_cohort",
    "rule_filter_metadata",
    "rule_validate_rois",
    "rule_extract_patches",
    "rule_collect_patches",
}
# Tables written next to the shards; the run must reproduce them exactly.
TABLES = ["manifest.parquet", "rois/rejected.parquet", "rois/rois.parquet"]
# Few batches, so that SLURM jobs hold several exams.
BATCHES = {"patches": {"batches": 4}}
RUN_TIMEOUT = 600  # seconds; the run takes about 2 minutes on a 2-core machine


def run(*command: str, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)


def snakemake(workdir: Path, *args: str) -> subprocess.CompletedProcess:
    overlay = workdir / "batches.yaml"
    overlay.write_text(yaml.safe_dump(BATCHES))
    command = snakemake_command(
        workdir, *args, TARGET, configfiles=(DEMO_CONFIG, overlay), cores=None
    )
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=RUN_TIMEOUT)
    except subprocess.TimeoutExpired:
        process.send_signal(signal.SIGINT)  # Snakemake cancels its SLURM jobs on SIGINT
        try:
            stdout, stderr = process.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        pytest.fail(f"snakemake ran over {RUN_TIMEOUT} s:\n{stderr[-4000:]}")
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)


@pytest.fixture(scope="module")
def slurm_run(cluster, tmp_path_factory) -> Path:
    workdir = tmp_path_factory.mktemp("slurm_run")
    result = snakemake(
        workdir,
        "--profile",
        str(PROFILE),
        "--slurm-init-seconds-before-status-checks",
        "1",
        "--slurm-keep-successful-logs",
    )
    assert result.returncode == 0, result.stderr[-6000:]
    return workdir


def profile() -> dict:
    return yaml.safe_load((PROFILE / "config.yaml").read_text())


def submissions(workdir: Path) -> dict[str, Path]:
    """SLURM job id -> its SLURM log, from Snakemake's log of the run."""
    (log,) = (workdir / ".snakemake" / "log").glob("*.snakemake.log")
    found = re.findall(r"submitted with SLURM jobid (\d+) \(log: (.+?)\)\.$", log.read_text(), re.M)
    return {job_id: Path(path) for job_id, path in found}


def squeue(job_ids) -> dict[str, dict[str, str]]:
    """Job id -> state, partition, CPUs and memory, for the jobs SLURM still lists."""
    result = run(
        "squeue", "--states=all", "--noheader", f"--jobs={','.join(job_ids)}",
        "--format=%i|%T|%P|%C|%m",
    )  # fmt: skip
    jobs = {}
    for line in result.stdout.splitlines():
        job_id, state, partition, cpus, memory = line.strip().split("|")
        jobs[job_id] = {"state": state, "partition": partition, "cpus": cpus, "memory": memory}
    return jobs


@pytest.mark.slurm
@pytest.mark.workflow
def test_every_rule_ran_as_a_slurm_job(slurm_run, cluster):
    jobs = submissions(slurm_run)
    folders = {
        path.relative_to(slurm_run / ".snakemake" / "slurm_logs").parts[0] for path in jobs.values()
    }
    assert folders == SUBMITTED
    for job_id, path in jobs.items():
        text = path.read_text()  # written by SLURM on the node, kept by the test
        assert "Finished jobid" in text, f"SLURM job {job_id}: {path}\n{text[-2000:]}"
    listed = squeue(jobs)
    if cluster["min_job_age"] >= 120:  # finished jobs are still listed
        assert listed.keys() == jobs.keys()
    assert {job["state"] for job in listed.values()} <= {"COMPLETED"}, listed
    if cluster["partition"]:
        assert {job["partition"] for job in listed.values()} <= {cluster["partition"]}


@pytest.mark.slurm
@pytest.mark.workflow
def test_exams_are_batched_into_few_slurm_jobs(slurm_run, cluster):
    jobs = submissions(slurm_run)
    batches = {job_id: path for job_id, path in jobs.items() if "rule_extract_patches" in str(path)}
    records = sorted((slurm_run / "results/patches/batches").glob("*.json"))
    exams = sorted(path.stem for path in (slurm_run / "results/patches").glob("*.h5"))
    assert len(exams) > len(records) > 1  # several exams per batch here
    assert len(batches) == len(records)
    in_batches = set()
    for path in batches.values():
        text = path.read_text()
        in_batches |= set(re.findall(r"batch=(b\d+)", text))
        # The job's Snakemake read its batch's published specifications, not every exam's
        # (it says so when it has to build them all: patches.plan.job_batch_specs).
        assert "no published specifications" not in text, path
    assert in_batches == {path.stem for path in records}
    # One folder per version of the inputs (patches.plan.publish_batch_specs); one run, one version.
    (published,) = (slurm_run / "results/patches/specs").iterdir()
    assert {path.stem for path in published.glob("b*.json")} == in_batches
    # A batch runs its exams one after another: one CPU, one exam's memory (attempt 1).
    extract = profile()["set-resources"]["extract_patches"]
    memory = eval(str(extract["mem_mb"]), {"attempt": 1})
    for job in squeue(batches).values():
        assert (job["cpus"], job["memory"]) == ("1", f"{memory}M")


def shards(run_dir: Path) -> dict[str, Path]:
    return {path.name: path for path in sorted((run_dir / "results/patches").glob("*.h5"))}


@pytest.mark.slurm
@pytest.mark.workflow
def test_slurm_run_gives_the_local_run_s_patches(slurm_run, demo_run):
    on_slurm, local = shards(slurm_run), shards(demo_run)
    assert on_slurm.keys() == local.keys() and local
    for name, path in local.items():
        expected, actual = read_shard(path), read_shard(on_slurm[name])
        np.testing.assert_array_equal(actual.patches, expected.patches, err_msg=name)
        pd.testing.assert_frame_equal(actual.info, expected.info)
        pd.testing.assert_frame_equal(actual.rejections, expected.rejections)
        assert actual.attrs == expected.attrs, name


@pytest.mark.slurm
@pytest.mark.workflow
@pytest.mark.parametrize("table", TABLES)
def test_slurm_run_gives_the_local_run_s_tables(slurm_run, demo_run, table):
    pd.testing.assert_frame_equal(
        pd.read_parquet(slurm_run / "results" / table),
        pd.read_parquet(demo_run / "results" / table),
    )


def test_profile_resources_are_python_expressions_of_attempt():
    """Every set-resources value evaluates, for attempts 1 to 3, to a growing integer."""
    for rule, resources in profile()["set-resources"].items():
        for name, value in resources.items():
            ast.parse(str(value), mode="eval")
            values = [eval(str(value), {"attempt": attempt}) for attempt in (1, 2, 3)]
            assert all(isinstance(v, int) and v > 0 for v in values), (rule, name)
            assert values == sorted(values), (rule, name)


@pytest.mark.workflow
@pytest.mark.parametrize("name", ["default", "slurm"])
def test_profile_is_accepted_by_snakemake(name, tmp_path):
    """Every key is a valid option (a dry run refuses unknown ones), with or without SLURM."""
    command = snakemake_command(
        tmp_path, "--profile", str(ROOT / "workflow" / "profiles" / name), "--dry-run", cores=None
    )
    result = run(*command, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"Using profile {ROOT / 'workflow' / 'profiles' / name}" in result.stderr
