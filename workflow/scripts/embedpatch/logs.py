"""Logging set-up shared by the rule scripts, and progress lines for long steps."""

import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sized
from typing import Any, TypeVar

log = logging.getLogger(__name__)
progress_log = logging.getLogger("embedpatch.progress")
"""Progress lines of long steps: the rule's log and the job's stderr (for a local run,
the terminal Snakemake runs in)."""

PROGRESS_SECONDS = 10.0
"""Default time between two progress lines; EMBEDPATCH_PROGRESS_SECONDS overrides it."""

Item = TypeVar("Item")


def log_to(path: str) -> None:
    """Send this process's log records (INFO and up) to the rule's log file, and progress
    lines to stderr as well."""
    logging.basicConfig(
        filename=path,
        level=logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        force=True,
    )
    logging.getLogger("openjpeg").setLevel(logging.WARNING)  # a line per frame otherwise
    terminal = logging.StreamHandler(sys.stderr)
    terminal.setFormatter(logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    progress_log.handlers = [terminal]  # and on to the root logger's file


def run_logged(log_path: str, step: Callable[..., Any], **arguments: Any) -> Any:
    """Run one pipeline step with its log going to `log_path`; a failure is logged, then
    re-raised so the rule fails. The step's arguments are passed by name: a rule script
    says which of its inputs, outputs and params is which parameter."""
    log_to(log_path)
    try:
        return step(**arguments)
    except Exception:
        log.exception("%s failed", step.__name__)
        raise


def progress_interval() -> float:
    """Seconds between progress lines: EMBEDPATCH_PROGRESS_SECONDS, else PROGRESS_SECONDS."""
    text = os.environ.get("EMBEDPATCH_PROGRESS_SECONDS")
    if text is None:
        return PROGRESS_SECONDS
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise ValueError(f"EMBEDPATCH_PROGRESS_SECONDS: {text!r} is not a number of seconds >= 0")
    return seconds


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    return f"{minutes} min {seconds:02d} s" if minutes else f"{seconds} s"


def _rate(per_second: float) -> str:
    return f"{per_second:,.0f}" if per_second >= 10 else f"{per_second:.2g}"


class Progress:
    """Logs how far a long step is (count, rate, time left) at most every `interval`
    seconds, on the progress logger (the rule's log and, for local runs, the terminal).

    `total`: the count at the end, when known; `update(done, share=...)` gives the
    share done directly when only that is known (a CSV read by blocks).
    """

    def __init__(
        self,
        what: str,
        unit: str,
        total: int | None = None,
        interval: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.what, self.unit, self.total = what, unit, total
        self.interval = progress_interval() if interval is None else interval
        self._clock = clock
        self.started = self._last = clock()
        self.done = 0

    def update(self, done: int, share: float | None = None) -> None:
        """`done` items so far (and the share of the work done, if not done / total)."""
        self.done = done
        now = self._clock()
        if now - self._last < self.interval:
            return
        self._last = now
        progress_log.info("%s", self.line(now - self.started, share))

    def line(self, elapsed: float, share: float | None = None) -> str:
        """The progress line after `elapsed` seconds."""
        if share is None and self.total:
            share = self.done / self.total
        count = f"{self.done:,}" + (f" of {self.total:,}" if self.total is not None else "")
        text = f"{self.what}: {count} {self.unit}"
        if elapsed > 0:
            text += f", {_rate(self.done / elapsed)} {self.unit}/s"
        if share:
            left = elapsed * (1 - min(share, 1.0)) / share
            text += f", {min(share, 1.0):.0%} done, about {_duration(left)} left"
        return text

    def finish(self) -> None:
        """Log the whole step's count, rate and time (the rule's log only)."""
        elapsed = self._clock() - self.started
        rate = f", {_rate(self.done / elapsed)} {self.unit}/s" if elapsed > 0 else ""
        log.info(
            "%s: %s %s in %s%s", self.what, f"{self.done:,}", self.unit, _duration(elapsed), rate
        )


def with_progress(items: Iterable[Item], what: str, unit: str) -> Iterator[Item]:
    """`items`, logging progress as they are taken (total from len() when it has one)."""
    total = len(items) if isinstance(items, Sized) else None
    progress = Progress(what, unit, total)
    for done, item in enumerate(items, start=1):
        yield item
        progress.update(done)
    progress.finish()
