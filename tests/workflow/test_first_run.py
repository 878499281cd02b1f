"""A first run on one's own data, as a new user makes it: a wrong path_rewrite prefix or
dicom_root stops before any job, a run that writes nothing fails with the reasons, and a
run that works ends with a summary in the terminal that says what summary.json says."""

import json
import os
import re
import subprocess
from pathlib import Path

import pandas as pd
import pytest
import yaml

from embedpatch.demo import SOURCE_PREFIX
from embedpatch.report.end_of_run import end_of_run_summary
from helpers.user_mode import clean_rows, exams_with, set_up_run, snakemake
from helpers.user_mode import snakemake_command as user_command

pytestmark = pytest.mark.workflow


@pytest.fixture(scope="module")
def two_exams(demo_cohort) -> pd.DataFrame:
    """The good rows of two exams of the demo cohort, one with a 2D and a 3D ROI."""
    clean = clean_rows(demo_cohort)
    first = exams_with(clean, "2D", "3D")[0]
    second = next(acc for acc in exams_with(clean, "2D") if acc != first)
    return clean[clean["acc_anon"].isin([first, second])].reset_index(drop=True)


def edit_config(workdir: Path, **changes) -> None:
    path = workdir / "config.yaml"
    path.write_text(yaml.safe_dump(yaml.safe_load(path.read_text()) | changes))


def no_job_ran(workdir: Path, stderr: str) -> bool:
    return not (workdir / "results").exists() and "Error in rule" not in stderr


def test_a_wrong_path_rewrite_prefix_stops_before_any_job(tmp_path, two_exams, demo_cohort):
    root = demo_cohort / "images"
    set_up_run(tmp_path, two_exams, root)
    wrong = SOURCE_PREFIX.replace("anon_dicom/", "anon_dicom_WRONG/")
    edit_config(tmp_path, path_rewrite=[{"from": wrong, "to": f"{root}/"}])
    result = snakemake(tmp_path)
    assert result.returncode != 0
    first_path = two_exams.at[0, "anon_dicom_path"]
    n = len(two_exams)
    assert f"Path check: none of {n} image paths sampled from the {n} rows of metadata.csv" in (
        result.stderr
    )
    assert f"  table path:    {first_path}\n" in result.stderr
    assert f"  became:        {first_path} (outside dicom_root)\n" in result.stderr
    assert f"  from prefixes: {wrong} (they start 0 of the {n} sampled paths)" in result.stderr
    assert f"most common prefix of the table's paths: {SOURCE_PREFIX}" in result.stderr
    assert f"      - from: {SOURCE_PREFIX}\n        to: {root}/\n" in result.stderr
    assert no_job_ran(tmp_path, result.stderr)


def test_a_dicom_root_on_the_wrong_disk_stops_before_any_job(tmp_path, two_exams, demo_cohort):
    elsewhere = tmp_path / "unmounted/embed/images"
    set_up_run(tmp_path, two_exams, elsewhere)
    result = snakemake(tmp_path)
    assert result.returncode != 0
    assert f"under dicom_root {elsewhere} (that folder does not exist)." in result.stderr
    first = two_exams.at[0, "anon_dicom_path"]
    became = f"{elsewhere}/{first.removeprefix(SOURCE_PREFIX)} (no such file)"
    assert f"  became:        {became}\n" in result.stderr
    assert no_job_ran(tmp_path, result.stderr)
    # the user who knows better turns the check off: the run goes on, every image missing
    edit_config(tmp_path, checks={"paths": False})
    assert "Path check" not in snakemake(tmp_path, "--dry-run").stderr


def printed_summary(stderr: str) -> str:
    """The end-of-run summary block printed by the run."""
    start = stderr.index("Run summary (")
    lines = stderr[start:].splitlines()
    end = next(i for i, line in enumerate(lines[1:], 1) if not line.startswith("  "))
    return "\n".join(lines[:end])


def test_a_run_that_writes_nothing_fails_with_the_reasons(tmp_path, two_exams, demo_cohort):
    set_up_run(tmp_path, two_exams, demo_cohort / "images")
    edit_config(tmp_path, filter={"manufacturers": ["NO_SUCH_MAKER"]})
    result = snakemake(tmp_path)
    assert result.returncode != 0
    failure = result.stderr[result.stderr.index("Run failed:") :]
    assert failure.startswith(
        "Run failed:\n"
        "  rule check_run: log results/logs/check_run.log\n"
        "    embedpatch.report.end_of_run.EmptyRunError: no patch was written from the "
        f"{len(two_exams)} rows of metadata.csv.\n"
        f"      rows dropped by the filter: {len(two_exams)} of {len(two_exams)}: manufacturer"
    )
    summary = json.loads((tmp_path / "results/summary.json").read_text())
    assert printed_summary(result.stderr) == end_of_run_summary(summary, "results")
    # Told to accept an empty result, the run succeeds and still says why it is empty.
    edit_config(tmp_path, checks={"on_empty": "warn"})
    result = snakemake(tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "WARNING: no patch was written from the" in result.stderr
    verdict = json.loads((tmp_path / "results/run_check.json").read_text())
    assert verdict["empty"] and verdict["on_empty"] == "warn"


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, two_exams, demo_cohort):
    """A run that works, with a progress line at every step of the long loops."""
    workdir = set_up_run(tmp_path_factory.mktemp("first_run"), two_exams, demo_cohort / "images")
    command = user_command(workdir)
    env = {**os.environ, "EMBEDPATCH_PROGRESS_SECONDS": "0"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    assert result.returncode == 0, result.stderr[-4000:]
    return workdir, result.stderr


def test_the_end_of_run_summary_equals_summary_json(first_run):
    workdir, stderr = first_run
    summary = json.loads((workdir / "results/summary.json").read_text())
    text = printed_summary(stderr)
    assert text == end_of_run_summary(summary, "results")
    funnel = {stage: counts["total"] for stage, counts in summary["funnel"].items()}
    rows = re.search(r"metadata rows: +(\d+) read, (\d+) kept, (\d+) dropped", text)
    assert [int(n) for n in rows.groups()] == [
        funnel["rows_in"],
        funnel["rows_kept"],
        summary["filter"]["rows_dropped"],
    ]
    rois = re.search(r"ROIs: +(\d+) declared, (\d+) accepted, (\d+) refused", text)
    assert [int(n) for n in rois.groups()] == [
        funnel["rois_declared"],
        funnel["rois_accepted"],
        funnel["rois_rejected"],
    ]
    patches = re.search(r"patches: +(\d+) written \((\d+) ROI, (\d+) negative\) in (\d+)", text)
    assert [int(n) for n in patches.groups()] == [
        funnel["patches"],
        funnel["patches_roi"],
        funnel["patches_negative"],
        summary["patches"]["shards"],
    ]
    assert funnel["patches"] > 0 and "Run failed" not in stderr


def test_long_steps_report_progress_in_their_log_and_the_terminal(first_run):
    workdir, stderr = first_run
    logs = workdir / "results/logs"
    expected = {
        "filter_metadata.log": r"stage 1, metadata filter: \d+ rows, .*100% done",
        "validate_rois.log": r"stage 2, ROI validation: \d+ of \d+ rows, ",
    }
    for name, pattern in expected.items():
        assert re.search(pattern, (logs / name).read_text()), name
        assert re.search(pattern, stderr), name
    batch_logs = sorted((logs / "extract_patches").glob("*.log"))
    assert batch_logs
    for path in batch_logs:
        pattern = rf"batch {path.stem}: \d+ of \d+ exams, "
        assert re.search(pattern, path.read_text()) and re.search(pattern, stderr)
