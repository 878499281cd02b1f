"""What a run prints when it ends: the summary from summary.json, the failed rules and
their logs' errors, and the verdict on a run that wrote no patch. The workflow tests of
tests/workflow/test_first_run.py check the same on real runs."""

import json
import logging
import os
import re
import threading
from types import SimpleNamespace

import pytest
from snakemake.scheduling.job_scheduler import JobScheduler

from embedpatch.logs import run_logged
from embedpatch.report.end_of_run import (
    EmptyRunError,
    FailedJob,
    cancel_scheduler_timers,
    check_run,
    empty_run_problem,
    end_of_run_summary,
    failed_jobs,
    failure_report,
    log_error,
    summary_is_current,
    top_reasons,
)

FILTER_REASONS = {"image_type": 2, "3d_without_roi": 13, "spot_mag": 0, "path_outside_root": 4}


def stage(total: int, **by_type: int) -> dict:
    return {"total": total, "by_image_type": {"2D": 0, "cview": 0, "3D": 0, **by_type}}


def summary(patches: int = 193, rows_in: int = 116) -> dict:
    """A summary.json as summarize_run writes it (the keys the terminal summary reads)."""
    kept = rows_in - sum(FILTER_REASONS.values())
    return {
        "funnel": {
            "rows_in": {"total": rows_in},
            "rows_kept": stage(kept, **{"2D": kept}),
            "rois_declared": stage(52, **{"2D": 52}),
            "rois_accepted": stage(34, **{"2D": 34}),
            "rois_rejected": stage(18, **{"2D": 18}),
            "rois_with_patches": stage(34 if patches else 0),
            "patches": stage(patches, **{"2D": patches}),
            "patches_roi": stage(120 if patches else 0),
            "patches_negative": stage(patches - 120 if patches else 0),
        },
        "filter": {
            "metadata": "tables/metadata.csv",
            "rows_in": rows_in,
            "rows_kept": kept,
            "rows_dropped": sum(FILTER_REASONS.values()),
            "dropped_by_reason": FILTER_REASONS,
        },
        "rois": {
            "rows_without_rois": 59,
            "rejections_by_reason": {"image_missing": 9, "non_integer": 1, "count_mismatch": 3},
            "warnings": {"clipped": 1, "near_duplicate": 2, "suspect_flip": 3, "flip_fixed": 0},
        },
        "patches": {
            "shards": 16 if patches else 0,
            "patches": patches,
            "rejections_by_stage": {"validate": 13, "extract": 2},
            "rois_rejected_by_extraction": 5,
        },
    }


def test_top_reasons_rank_the_non_zero_counts_and_sum_the_rest():
    counts = {"a": 1, "b": 0, "c": 7, "d": 3, "e": 1}
    assert top_reasons(counts, top=2) == "c 7, d 3, and 2 more in 2 other reasons"
    assert top_reasons(counts) == "c 7, d 3, a 1, e 1"
    assert top_reasons({"a": 0}) == ""


def test_the_end_of_run_summary_says_every_count_of_the_summary():
    text = end_of_run_summary(summary(), "results")
    assert text.splitlines() == [
        "Run summary (results/summary.json)",
        "  metadata rows:  116 read, 97 kept, 19 dropped: 3d_without_roi 13, path_outside_root 4,"
        " image_type 2",
        "  ROIs:           52 declared, 34 accepted, 18 refused in 13 rejections: image_missing 9,"
        " count_mismatch 3, non_integer 1",
        "  ROI warnings:   clipped 1, near_duplicate 2, suspect_flip 3, flip_fixed 0",
        "  extraction:     2 images refused (5 ROIs)",
        "  patches:        193 written (120 ROI, 73 negative) in 16 shards",
        "  tables:         results/manifest.parquet, results/rois/rejected.csv,"
        " results/metadata/dropped.parquet",
        "  figures:        results/figures/",
        "  report:         snakemake --report results/report.html (with this run's --configfile)",
    ]


def test_a_run_that_wrote_patches_or_read_nothing_is_not_empty():
    assert empty_run_problem(summary()) is None
    assert empty_run_problem(summary(patches=0, rows_in=0)) is None


def test_an_empty_run_names_the_reasons_that_took_the_rows():
    problem = empty_run_problem(summary(patches=0))
    assert problem.splitlines() == [
        "no patch was written from the 116 rows of tables/metadata.csv.",
        "  rows dropped by the filter: 19 of 116: 3d_without_roi 13, path_outside_root 4,"
        " image_type 2",
        "  ROIs refused: 18 of 52 declared: image_missing 9, count_mismatch 3, non_integer 1",
        "  kept rows without ROIs: 59 (they give patches only with"
        " patches.negatives_per_image > 0)",
        "  images refused at extraction: 2",
    ]


def write_summary(tmp_path, content: dict):
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(content))
    return path


def test_check_run_fails_an_empty_run_unless_told_to_warn(tmp_path, caplog):
    empty = write_summary(tmp_path, summary(patches=0))
    verdict = tmp_path / "run_check.json"
    with pytest.raises(EmptyRunError, match="no patch was written") as raised:
        check_run(str(empty), str(verdict), on_empty="error")
    assert str(raised.value).endswith("Set checks.on_empty: warn to accept an empty result.")
    assert not verdict.exists()
    written = check_run(str(empty), str(verdict), on_empty="warn")
    assert json.loads(verdict.read_text()) == written
    assert written["empty"] and written["problem"].startswith("no patch was written")
    full = write_summary(tmp_path, summary())
    caplog.set_level(logging.INFO)
    assert check_run(str(full), str(verdict), on_empty="error")["empty"] is False
    assert "193 patches written from 116 rows" in caplog.text  # a rule's log is never empty


def test_the_summary_is_current_only_when_no_input_is_newer(tmp_path):
    inputs = [tmp_path / name for name in ("manifest.parquet", "roi_summary.json")]
    for path in inputs:
        path.write_text("x")
    path = write_summary(tmp_path, summary())
    assert summary_is_current(str(path), map(str, inputs))
    later = path.stat().st_mtime + 5
    os.utime(inputs[0], (later, later))
    assert not summary_is_current(str(path), map(str, inputs))
    assert not summary_is_current(str(tmp_path / "absent.json"), [])


@pytest.fixture
def logging_restored():
    """run_logged points the root logger at the rule's log: put it back afterwards."""
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    yield
    for handler in root.handlers:
        handler.close()
    root.handlers, root.level = saved
    logging.getLogger("embedpatch.progress").handlers = []


def failing_step(reason: str) -> None:
    raise EmptyRunError(f"{reason}\n  second line of the message")


def test_a_failed_step_logs_the_error_the_failure_report_shows(tmp_path, logging_restored):
    log = tmp_path / "check_run.log"
    with pytest.raises(EmptyRunError):
        run_logged(str(log), failing_step, reason="nothing written")
    assert "Traceback (most recent call last):" in log.read_text()
    assert log_error(str(log)) == [
        "embedpatch.report.end_of_run.EmptyRunError: nothing written",
        "  second line of the message",
    ]
    plain = tmp_path / "plain.log"
    plain.write_text("first\nlast words\n\n")
    assert log_error(str(plain)) == ["last words"]
    assert log_error(str(tmp_path / "absent.log")) == []


# Error blocks as Snakemake 9 writes them to its log (snakemake/logging.py, _format_job_error).
SNAKEMAKE_LOG = """\
[Tue Dec  1 10:42:36 2026]
Error in rule check_run:
    message: None
    jobid: 5
    input: results/summary.json
    output: results/run_check.json
    log: {log} (check log file(s) for error details)
Error in rule extract_patches:
    jobid: 9
    output: results/patches/batches/b001.json, results/patches/batches/b001.parquet
    log: results/logs/extract_patches/b001.log, other.log (check log file(s) for error details)
Error in rule no_log:
    jobid: 3
Shutting down, this might take some time.
"""


def test_the_failed_jobs_are_read_from_snakemakes_log(tmp_path, logging_restored):
    rule_log = tmp_path / "check_run.log"
    with pytest.raises(EmptyRunError):
        run_logged(str(rule_log), failing_step, reason="nothing written")
    text = SNAKEMAKE_LOG.format(log=rule_log)
    assert failed_jobs(text) == [
        FailedJob("check_run", (str(rule_log),)),
        FailedJob("extract_patches", ("results/logs/extract_patches/b001.log", "other.log")),
        FailedJob("no_log", ()),
    ]
    snakemake_log = tmp_path / "run.snakemake.log"
    snakemake_log.write_text(text)
    report = failure_report([str(snakemake_log)])
    assert report.splitlines()[:4] == [
        "Run failed:",
        f"  rule check_run: log {rule_log}",
        "    embedpatch.report.end_of_run.EmptyRunError: nothing written",
        "      second line of the message",
    ]
    assert re.search(r"^  rule no_log: log \(none\)$", report, re.MULTILINE)
    assert failure_report([str(tmp_path / "absent.log")]) is None


def test_the_schedulers_wake_up_timer_is_cancelled_and_other_timers_are_left():
    """Snakemake's own scheduler method starts the timer a finished run would wait for."""
    woken = threading.Semaphore(0)
    JobScheduler._schedule_reevalutation(SimpleNamespace(_open_jobs=woken), 30)
    other = threading.Timer(30, lambda: None)
    other.start()
    try:
        (scheduler_timer,) = [
            t for t in threading.enumerate() if isinstance(t, threading.Timer) and t is not other
        ]
        assert cancel_scheduler_timers() == 1
        scheduler_timer.join(timeout=5)
        assert not scheduler_timer.is_alive()
        assert not woken.acquire(blocking=False)  # cancelled, not fired
        assert other.is_alive()
        assert cancel_scheduler_timers() == 0
    finally:
        other.cancel()
