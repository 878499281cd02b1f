"""Exams spread over extraction jobs ("batches"), one shard per exam.

Snakemake spends about a second on each job it runs, more than cutting a small exam
takes; one job per exam would cost a workstation hours of overhead on the whole
dataset. So exams are grouped. On the first run an exam's batch is a hash of its
`acc_anon` modulo the number of batches (`batch_name`), so batches come out even.
After that exams stay where they are: the run saves its layout
(`results/patches/layout.json`), and the next one keeps every known exam in its batch
and puts the new exams in new batches of their own (`BatchLayout.extended`). Ten new
exams at 10,000 then rerun one or two jobs, not ten, and inside a rerun batch only the
exams whose shard is missing or stale are recomputed (embedpatch.patches.batch_job).
The layout is built from the hash again when the number of batches changes
(`auto_batch_count` sizes it to the cohort in powers of two, so that it changes only
when the cohort doubles) or when the added batches outnumber the hashed ones.

Which batch an exam is in changes which job cuts it, never its shard.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from embedpatch.io.atomic import atomic_output

AUTO_MAX_BATCHES = 256
EXAMS_PER_BATCH = 4
"""`auto`: at least this many exams per job, beyond the first two jobs."""
NEW_BATCHES_AT_LEAST = 2
"""New exams go to at least this many new batches (one per core of a small workstation)."""
LAYOUT_VERSION = 1
RECORD_DIR = "batches"
"""Where a batch's Snakemake outputs are, in the shards' folder: its record and table."""
STATE_DIR = "state"
"""Where a batch's state is, in the shards' folder (embedpatch.patches.batch_job)."""


def auto_batch_count(n_exams: int) -> int:
    """The number of batches `auto` gives `n_exams` exams: the largest power of two not
    above n_exams // EXAMS_PER_BATCH, at least 2 (one per core of a small workstation;
    1 for a single exam), at most AUTO_MAX_BATCHES."""
    limit = min(AUTO_MAX_BATCHES, max(n_exams // EXAMS_PER_BATCH, min(n_exams, 2), 1))
    return 1 << (limit.bit_length() - 1)


def batch_name(acc_anon: str, n_batches: int) -> str:
    """The hashed batch of an exam: `b` and a zero-padded number below `n_batches`."""
    if n_batches < 1:
        raise ValueError(f"n_batches must be at least 1, not {n_batches}")
    digest = hashlib.sha256(str(acc_anon).encode()).digest()
    number = int.from_bytes(digest[:8], "big") % n_batches
    return f"b{number:0{len(str(n_batches - 1))}d}"


def _number(batch: str) -> int:
    return int(batch[1:])


def _split(exams: list[str], parts: int) -> list[list[str]]:
    """`exams` cut in order into `parts` runs whose lengths differ by at most one."""
    size, extra = divmod(len(exams), parts)
    bounds = [part * size + min(part, extra) for part in range(parts + 1)]
    return [exams[start:end] for start, end in itertools.pairwise(bounds)]


@dataclass(frozen=True)
class BatchLayout:
    """Which exams each batch holds: `batches` maps a batch name to its sorted acc_anon
    values (no batch is empty); `hashed` is the number of batches the hash spread the
    exams over (`batch_name`). Batches numbered from `hashed` on hold exams added later."""

    hashed: int
    batches: Mapping[str, tuple[str, ...]]

    @classmethod
    def by_hash(cls, exams: Iterable[str], n_batches: int) -> BatchLayout:
        """Every exam in its hashed batch."""
        batches: dict[str, list[str]] = {}
        for acc in sorted(exams):
            batches.setdefault(batch_name(acc, n_batches), []).append(acc)
        return cls(n_batches, {name: tuple(batches[name]) for name in sorted(batches)})

    def added_batches(self) -> list[str]:
        """The batches of exams added after the hashed layout."""
        return [name for name in self.batches if _number(name) >= self.hashed]

    def extended(self, exams: Collection[str], n_batches: int) -> BatchLayout:
        """The layout for a run whose exams are `exams`, built on this one: known exams
        stay in their batch, departed ones leave it, and new ones fill new batches of
        about the hashed batches' mean size (at least EXAMS_PER_BATCH, in at least
        NEW_BATCHES_AT_LEAST batches when there are that many). Built by hash instead
        when `n_batches` is not this layout's, or when the added batches would outnumber
        the hashed ones."""
        if n_batches != self.hashed:
            return BatchLayout.by_hash(exams, n_batches)
        wanted = set(exams)
        kept = {
            name: tuple(acc for acc in members if acc in wanted)
            for name, members in self.batches.items()
        }
        batches = {name: members for name, members in kept.items() if members}
        new = sorted(wanted - {acc for members in batches.values() for acc in members})
        if new:
            size = max(EXAMS_PER_BATCH, math.ceil(len(wanted) / n_batches))
            parts = max(math.ceil(len(new) / size), min(len(new), NEW_BATCHES_AT_LEAST))
            first = max([n_batches - 1, *map(_number, self.batches)]) + 1
            for offset, members in enumerate(_split(new, parts)):
                batches[f"b{first + offset}"] = tuple(members)
        layout = BatchLayout(n_batches, dict(sorted(batches.items(), key=lambda b: _number(b[0]))))
        if len(layout.added_batches()) > n_batches:
            return BatchLayout.by_hash(exams, n_batches)
        return layout

    def group(self, specs: Mapping[str, str]) -> dict[str, dict[str, str]]:
        """batch -> {acc_anon: specification} of the exams of `specs`, all of which
        the layout must hold (KeyError otherwise)."""
        batch_of = {acc: name for name, members in self.batches.items() for acc in members}
        grouped: dict[str, dict[str, str]] = {name: {} for name in self.batches}
        for acc in sorted(specs):
            grouped[batch_of[acc]][acc] = specs[acc]
        return {name: members for name, members in grouped.items() if members}

    def to_json(self) -> str:
        """The layout as JSON (what `read` reads)."""
        saved = {
            "version": LAYOUT_VERSION,
            "hashed": self.hashed,
            "batches": {name: list(members) for name, members in self.batches.items()},
        }
        return json.dumps(saved, separators=(",", ":")) + "\n"

    @classmethod
    def read(cls, path: str | Path) -> BatchLayout | None:
        """The layout saved at `path`; None when there is none, or it is unreadable or
        of another version (the next layout is then built by hash)."""
        try:
            saved = json.loads(Path(path).read_text())
            if saved.get("version") != LAYOUT_VERSION:
                return None
            batches = {
                str(name): tuple(map(str, members)) for name, members in saved["batches"].items()
            }
            return cls(int(saved["hashed"]), batches)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def save(self, path: str | Path) -> bool:
        """Write the layout to `path` (atomically) unless it already holds it; whether it
        was written."""
        text = self.to_json()
        path = Path(path)
        try:
            if path.read_text() == text:
                return False
        except OSError:
            pass
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(path) as temporary:
            temporary.write_text(text)
        return True


def plan_layout(
    previous: BatchLayout | None, exams: Collection[str], n_batches: int
) -> BatchLayout:
    """The layout of a run with these exams: `previous` extended, or by hash without one."""
    if previous is None:
        return BatchLayout.by_hash(exams, n_batches)
    return previous.extended(exams, n_batches)
