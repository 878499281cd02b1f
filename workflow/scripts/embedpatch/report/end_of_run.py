"""What a run tells the user in the terminal when it ends, computed from its own files.

- After a run that built `summary.json`: a short summary computed from that file alone
  (`end_of_run_summary`), so the terminal and the file cannot disagree.
- After a failed run: each failed rule and its log first, with the log's last line
  (`failed_jobs`, read from Snakemake's own log of the run).
- A run that wrote no patch from a non-empty table is not a success (`check_run`, the
  last rule): it fails, or warns when `checks.on_empty` is `warn`, naming the reasons
  that took the rows and ROIs.
- Either way the run then exits at once: `cancel_scheduler_timers` stops the wake-up
  timer Snakemake's scheduler leaves pending, which would hold the exit up to a second.

Only the standard library: the Snakefile's handlers import this module.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from embedpatch.io.atomic import write_json

log = logging.getLogger(__name__)

TOP_REASONS = 5
SCHEDULER_MODULE = "snakemake.scheduling.job_scheduler"
"""Where the scheduler's wake-up timers are made (JobScheduler._schedule_reevalutation)."""


class EmptyRunError(RuntimeError):
    """The run wrote no patch from a table that has rows."""


def _json(path: str | Path) -> dict[str, Any]:
    with open(path) as file:
        return json.load(file)


def top_reasons(counts: Mapping[str, int], top: int = TOP_REASONS) -> str:
    """'reason n, reason n, ...' of the `top` largest non-zero counts, and what is left."""
    ranked = sorted(((n, reason) for reason, n in counts.items() if n), key=lambda x: -x[0])
    text = ", ".join(f"{reason} {n:,}" for n, reason in ranked[:top])
    rest = ranked[top:]
    if rest:
        text += f", and {sum(n for n, _ in rest):,} more in {len(rest)} other reasons"
    return text


def _with_reasons(text: str, counts: Mapping[str, int]) -> str:
    reasons = top_reasons(counts)
    return f"{text}: {reasons}" if reasons else text


def end_of_run_summary(summary: Mapping[str, Any], results: str) -> str:
    """The lines printed when a run ends, every number taken from `summary` (summary.json)."""
    total = {stage: counts["total"] for stage, counts in summary["funnel"].items()}
    filtered, rois, patches = summary["filter"], summary["rois"], summary["patches"]
    rejections = sum(rois["rejections_by_reason"].values())
    warnings = ", ".join(f"{code} {n:,}" for code, n in rois["warnings"].items())
    refused_at_extraction = patches["rejections_by_stage"].get("extract", 0)
    lines = [
        f"Run summary ({results}/summary.json)",
        _with_reasons(
            f"  metadata rows:  {total['rows_in']:,} read, {total['rows_kept']:,} kept, "
            f"{filtered['rows_dropped']:,} dropped",
            filtered["dropped_by_reason"],
        ),
        _with_reasons(
            f"  ROIs:           {total['rois_declared']:,} declared, "
            f"{total['rois_accepted']:,} accepted, {total['rois_rejected']:,} refused"
            + (f" in {rejections:,} rejections" if rejections else ""),
            rois["rejections_by_reason"],
        ),
        f"  ROI warnings:   {warnings}",
        f"  extraction:     {refused_at_extraction:,} images refused "
        f"({patches['rois_rejected_by_extraction']:,} ROIs)",
        f"  patches:        {total['patches']:,} written ({total['patches_roi']:,} ROI, "
        f"{total['patches_negative']:,} negative) in {patches['shards']:,} shards",
        f"  tables:         {results}/manifest.parquet, {results}/rois/rejected.csv, "
        f"{results}/metadata/dropped.parquet",
        f"  figures:        {results}/figures/",
        f"  report:         snakemake --report {results}/report.html "
        "(with this run's --configfile)",
    ]
    return "\n".join(lines)


def summary_is_current(summary_path: str, inputs: Iterable[str]) -> bool:
    """Whether `summary_path` exists and is no older than any of its inputs (so it
    describes this run's outputs, even when the run's targets did not include it)."""
    try:
        written = Path(summary_path).stat().st_mtime_ns
        return all(Path(path).stat().st_mtime_ns <= written for path in inputs)
    except OSError:
        return False


def empty_run_problem(summary: Mapping[str, Any]) -> str | None:
    """Why a run that read rows wrote no patch (None when it wrote patches or read no row)."""
    funnel = summary["funnel"]
    if funnel["patches"]["total"] or not funnel["rows_in"]["total"]:
        return None
    filtered, rois, patches = summary["filter"], summary["rois"], summary["patches"]
    lines = [
        f"no patch was written from the {funnel['rows_in']['total']:,} rows of "
        f"{filtered['metadata']}.",
        _with_reasons(
            f"  rows dropped by the filter: {filtered['rows_dropped']:,} of "
            f"{filtered['rows_in']:,}",
            filtered["dropped_by_reason"],
        ),
    ]
    if filtered["rows_kept"]:
        lines.append(
            _with_reasons(
                f"  ROIs refused: {funnel['rois_rejected']['total']:,} of "
                f"{funnel['rois_declared']['total']:,} declared",
                rois["rejections_by_reason"],
            )
        )
        lines.append(
            f"  kept rows without ROIs: {rois['rows_without_rois']:,} "
            "(they give patches only with patches.negatives_per_image > 0)"
        )
        lines.append(
            f"  images refused at extraction: {patches['rejections_by_stage'].get('extract', 0):,}"
        )
    return "\n".join(lines)


def check_run(summary_path: str, check_path: str, on_empty: str) -> dict[str, Any]:
    """The last rule: EmptyRunError when the run wrote no patch from a non-empty table and
    `on_empty` is 'error'; with 'warn' the problem is logged. Writes the verdict to
    `check_path` (JSON) unless it raises."""
    summary = _json(summary_path)
    problem = empty_run_problem(summary)
    funnel = summary["funnel"]
    log.info(
        "%d patches written from %d rows", funnel["patches"]["total"], funnel["rows_in"]["total"]
    )
    if problem is not None and on_empty == "error":
        raise EmptyRunError(f"{problem}\nSet checks.on_empty: warn to accept an empty result.")
    if problem is not None:
        log.warning("%s", problem)
    verdict = {"empty": problem is not None, "on_empty": on_empty, "problem": problem}
    write_json(check_path, verdict)
    return verdict


@dataclass(frozen=True)
class FailedJob:
    """A job Snakemake reported as failed: its rule and its log files."""

    rule: str
    logs: tuple[str, ...]


_ERROR = re.compile(r"^Error in rule (\S+):$")
_LOG = re.compile(r"^\s+log: (.*) \(check log file\(s\) for error details\)$")


def failed_jobs(snakemake_log: str) -> list[FailedJob]:
    """The failed jobs named in the text of Snakemake's log of a run, in order."""
    jobs: list[FailedJob] = []
    rule = None
    for line in snakemake_log.splitlines():
        if match := _ERROR.match(line):
            if rule is not None:
                jobs.append(FailedJob(rule, ()))
            rule = match[1]
        elif rule is not None and (match := _LOG.match(line)):
            jobs.append(FailedJob(rule, tuple(match[1].split(", "))))
            rule = None
        elif rule is not None and not line.startswith(" "):
            jobs.append(FailedJob(rule, ()))
            rule = None
    if rule is not None:
        jobs.append(FailedJob(rule, ()))
    return list(dict.fromkeys(jobs))


ERROR_LINES = 12


def log_error(path: str) -> list[str]:
    """The error a log ends with: the message of its last traceback (at most ERROR_LINES
    lines), else its last non-empty line; nothing when the log is missing or empty."""
    try:
        lines = [line for line in Path(path).read_text(errors="replace").splitlines() if line]
    except OSError:
        return []
    starts = [i for i, line in enumerate(lines) if line.startswith("Traceback (most recent")]
    if not starts:
        return lines[-1:]
    after = lines[starts[-1] + 1 :]
    message = next((i for i, line in enumerate(after) if not line.startswith(" ")), len(after))
    return after[message:][:ERROR_LINES]


def failure_report(snakemake_logs: Iterable[str]) -> str | None:
    """The lines printed after a failed run: each failed rule, its log and the error the
    log ends with; None when Snakemake's logs of the run name no failed job."""
    text = "\n".join(
        Path(path).read_text(errors="replace") for path in snakemake_logs if Path(path).is_file()
    )
    jobs = failed_jobs(text)
    if not jobs:
        return None
    lines = ["Run failed:"]
    for job in jobs:
        lines.append(f"  rule {job.rule}: log {', '.join(job.logs) or '(none)'}")
        lines += [f"    {line}" for path in job.logs for line in log_error(path)]
    return "\n".join(lines)


def print_end_of_run(
    summary_path: str, summary_inputs: Iterable[str], results: str, warn_empty: bool = True
) -> None:
    """onsuccess: print the end-of-run summary when the run left a current summary.json,
    and (`warn_empty`) the reasons when it wrote no patch from a table with rows (a run
    that succeeds so under checks.on_empty: warn)."""
    if not summary_is_current(summary_path, summary_inputs):
        return
    summary = _json(summary_path)
    print(end_of_run_summary(summary, results), file=sys.stderr)
    problem = empty_run_problem(summary)
    if warn_empty and problem is not None:
        print(f"WARNING: {problem}", file=sys.stderr)


def print_failure(
    snakemake_logs: str | Iterable[str] | None,
    summary_path: str,
    summary_inputs: Iterable[str],
    results: str,
) -> None:
    """onerror: print the failed rules and their logs' errors, then the summary when the
    run left a current summary.json (a run that wrote nothing fails after writing it).
    `snakemake_logs`: Snakemake's own log file(s) of the run, as onerror gets them."""
    if isinstance(snakemake_logs, str):
        snakemake_logs = [snakemake_logs]
    report = failure_report(snakemake_logs or [])
    if report is not None:
        print(report, file=sys.stderr)
    print_end_of_run(summary_path, summary_inputs, results, warn_empty=False)


def cancel_scheduler_timers() -> int:
    """Cancel the wake-up timers Snakemake's scheduler left pending; how many.

    After each scheduling round the scheduler starts a threading.Timer (not a daemon) that
    wakes it again after the timespan of --max-jobs-per-timespan, 1 s by default. Python
    waits for such threads before it exits, so a finished run would sit up to a second
    after its last line. The onsuccess and onerror handlers run after the scheduler has
    returned, when no wake-up is needed; timers made elsewhere are left alone.
    """
    timers = [
        thread
        for thread in threading.enumerate()
        if isinstance(thread, threading.Timer)
        and getattr(thread.function, "__module__", None) == SCHEDULER_MODULE
    ]
    for timer in timers:
        timer.cancel()
    return len(timers)
