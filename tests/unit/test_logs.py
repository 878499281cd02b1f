"""Progress lines of long steps: count, rate and time left at most every interval, in the
rule's log and on stderr (which, for a local run, is the terminal Snakemake runs in)."""

import logging

import pytest

from embedpatch.logs import Progress, log_to, with_progress


class StepClock:
    """A clock advanced by the test: time is what the test says it is."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def progress_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "embedpatch.progress"]


def test_a_line_at_most_every_interval_with_rate_and_time_left(caplog):
    caplog.set_level(logging.INFO)
    clock = StepClock()
    progress = Progress("stage 2", "rows", total=40_000, interval=10, clock=clock)
    for second in range(1, 36):
        clock.now = second
        progress.update(second * 1000)
    assert progress_lines(caplog) == [
        "stage 2: 10,000 of 40,000 rows, 1,000 rows/s, 25% done, about 30 s left",
        "stage 2: 20,000 of 40,000 rows, 1,000 rows/s, 50% done, about 20 s left",
        "stage 2: 30,000 of 40,000 rows, 1,000 rows/s, 75% done, about 10 s left",
    ]


def test_the_share_done_can_come_from_elsewhere_than_the_count(caplog):
    """Stage 1 reads a CSV by blocks: it knows the share of the bytes, not the rows."""
    caplog.set_level(logging.INFO)
    clock = StepClock()
    progress = Progress("stage 1", "rows", interval=30, clock=clock)
    clock.now = 90
    progress.update(123_456, share=0.2)
    clock.now = 5000
    progress.update(130_000, share=1.4)  # the last block is shorter than the others
    assert progress_lines(caplog) == [
        "stage 1: 123,456 rows, 1,372 rows/s, 20% done, about 6 min 00 s left",
        "stage 1: 130,000 rows, 26 rows/s, 100% done, about 0 s left",
    ]


def test_with_progress_counts_the_items_and_ends_with_a_total(caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    monkeypatch.setenv("EMBEDPATCH_PROGRESS_SECONDS", "0")
    assert list(with_progress(["a", "b", "c"], "batch b001", "exams")) == ["a", "b", "c"]
    lines = progress_lines(caplog)
    assert [line.split(",")[0] for line in lines] == [
        f"batch b001: {n} of 3 exams" for n in (1, 2, 3)
    ]
    final = [r.getMessage() for r in caplog.records if r.name == "embedpatch.logs"]
    assert len(final) == 1 and final[0].startswith("batch b001: 3 exams in 0 s")
    caplog.clear()
    assert list(with_progress(iter(range(2)), "stream", "rows")) == [0, 1]
    assert progress_lines(caplog)[-1].startswith("stream: 2 rows")  # no total known


def test_the_default_interval_keeps_short_steps_quiet(caplog, monkeypatch):
    caplog.set_level(logging.INFO)
    monkeypatch.delenv("EMBEDPATCH_PROGRESS_SECONDS", raising=False)
    assert sum(with_progress(range(1000), "quick", "rows")) == sum(range(1000))
    assert progress_lines(caplog) == []


def test_progress_goes_to_the_rule_log_and_stderr_other_lines_to_the_log(tmp_path, capfd):
    log_path = tmp_path / "rule.log"
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    try:
        log_to(str(log_path))
        logging.getLogger("embedpatch.filter.stage").info("an ordinary line")
        Progress("stage 1", "rows", total=10, interval=0).update(5)
        for handler in root.handlers:
            handler.flush()
        text = log_path.read_text()
        assert "an ordinary line" in text and "stage 1: 5 of 10 rows" in text
        stderr = capfd.readouterr().err
        assert "stage 1: 5 of 10 rows" in stderr and "an ordinary line" not in stderr
    finally:
        logging.getLogger("embedpatch.progress").handlers = []
        for handler in root.handlers:
            handler.close()
        root.handlers, root.level = saved


@pytest.mark.parametrize("value", ["ten", "-1"])
def test_a_bad_interval_in_the_environment_is_refused(monkeypatch, value):
    monkeypatch.setenv("EMBEDPATCH_PROGRESS_SECONDS", value)
    with pytest.raises(ValueError, match="EMBEDPATCH_PROGRESS_SECONDS"):
        Progress("x", "rows")
