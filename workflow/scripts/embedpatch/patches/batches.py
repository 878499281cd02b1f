"""Exams spread over extraction jobs ("batches"), one shard per exam.

Snakemake spends about a second on each job it runs, more than cutting a small exam
takes; one job per exam would cost a workstation hours of overhead on the whole
dataset. So exams are grouped: an exam's batch is a hash of its `acc_anon` modulo
the number of batches. It depends on nothing else, so with a fixed number exams
arriving in a new release never move old ones: adding exams reruns only the batches
they land in, and inside a batch only the exams whose shard is missing or stale are
recomputed (embedpatch.patches.batch_job). `auto_batch_count` sizes the number to the
cohort in powers of two, so that it changes only when the cohort doubles.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping

AUTO_MAX_BATCHES = 256
EXAMS_PER_BATCH = 4
"""`auto`: at least this many exams per job, beyond the first two jobs."""


def auto_batch_count(n_exams: int) -> int:
    """The number of batches `auto` gives `n_exams` exams: the largest power of two not
    above n_exams // EXAMS_PER_BATCH, at least 2 (one per core of a small workstation;
    1 for a single exam), at most AUTO_MAX_BATCHES."""
    limit = min(AUTO_MAX_BATCHES, max(n_exams // EXAMS_PER_BATCH, min(n_exams, 2), 1))
    return 1 << (limit.bit_length() - 1)


def batch_name(acc_anon: str, n_batches: int) -> str:
    """The batch of an exam: `b` and a zero-padded number below `n_batches`."""
    if n_batches < 1:
        raise ValueError(f"n_batches must be at least 1, not {n_batches}")
    digest = hashlib.sha256(str(acc_anon).encode()).digest()
    number = int.from_bytes(digest[:8], "big") % n_batches
    return f"b{number:0{len(str(n_batches - 1))}d}"


def group_into_batches(specs: Mapping[str, str], n_batches: int) -> dict[str, dict[str, str]]:
    """batch -> {acc_anon: specification}, batches and exams in sorted order.

    Only batches holding at least one exam appear (they are the extraction jobs).
    """
    batches: dict[str, dict[str, str]] = {}
    for acc_anon in sorted(specs):
        batches.setdefault(batch_name(acc_anon, n_batches), {})[acc_anon] = specs[acc_anon]
    return {name: batches[name] for name in sorted(batches)}
