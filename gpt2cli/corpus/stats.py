"""Per-stage counters shared by every ``gpt2 corpus`` verb.

A stage counts records in and out, drops by reason and bytes read; at the end
it prints one line on stderr and, with ``--stats FILE``, writes the same as JSON::

    stats = StageStats("links", strict=strict)
    for record in records:
        stats.count_in(nbytes=len(line))
        if bad:
            stats.bad("no_url", f"{source}: line {n}: no 'url'")  # shown, counted, or raised
            continue
        if record["score"] < min_karma:
            stats.drop("low_karma")
            continue
        stats.count_out()
    stats.finish(stats_file)
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any

from gpt2cli.console import info
from gpt2cli.errors import Gpt2Error
from gpt2cli.fileio import atomic_write

SHOW_BAD = 5


class StageStats:
    """Counters of one stage: ``documents_in``, ``documents_out``, ``dropped`` by reason."""

    def __init__(self, stage: str, strict: bool = False, show_bad: int = SHOW_BAD) -> None:
        self.stage = stage
        self.strict = strict
        self.show_bad = show_bad
        self.documents_in = 0
        self.documents_out = 0
        self.bytes_in = 0
        self.dropped: Counter[str] = Counter()
        self.bad_records = 0
        self.extra: dict[str, Any] = {}
        self._start = time.perf_counter()

    def count_in(self, n: int = 1, nbytes: int = 0) -> None:
        self.documents_in += n
        self.bytes_in += nbytes

    def add_bytes(self, nbytes: int) -> None:
        self.bytes_in += nbytes

    def count_out(self, n: int = 1) -> None:
        self.documents_out += n

    def drop(self, reason: str, n: int = 1) -> None:
        """``n`` records dropped by the rule ``reason`` (a short snake_case name)."""
        self.dropped[reason] += n

    def bad(self, reason: str, message: str) -> None:
        """A malformed record: raised under ``strict``, else counted as a drop and,
        for the first ``show_bad`` of them, shown as a warning."""
        if self.strict:
            raise Gpt2Error(message, "without --strict bad records are counted and skipped")
        self.bad_records += 1
        self.dropped[reason] += 1
        if self.bad_records <= self.show_bad:
            info(f"gpt2 corpus {self.stage}: warning: skipped {message}")
            if self.bad_records == self.show_bad:
                info(f"gpt2 corpus {self.stage}: warning: further bad records are only counted")

    def merge(self, other: StageStats) -> None:
        """Add the counters of ``other`` (a worker's) to these."""
        self.documents_in += other.documents_in
        self.documents_out += other.documents_out
        self.bytes_in += other.bytes_in
        self.dropped.update(other.dropped)
        self.bad_records += other.bad_records

    @property
    def seconds(self) -> float:
        return max(time.perf_counter() - self._start, 1e-9)

    def to_json(self) -> dict[str, Any]:
        seconds = self.seconds
        return {
            "stage": self.stage,
            "documents_in": self.documents_in,
            "documents_out": self.documents_out,
            "dropped": dict(sorted(self.dropped.items())),
            "bad_records": self.bad_records,
            "bytes_in": self.bytes_in,
            "seconds": round(seconds, 3),
            "mb_per_s": round(self.bytes_in / 1e6 / seconds, 3),
            **self.extra,
        }

    def summary_line(self) -> str:
        seconds = self.seconds
        drops = ", ".join(f"{reason} {n:,}" for reason, n in sorted(self.dropped.items()))
        return (
            f"gpt2 corpus {self.stage}: {self.documents_in:,} in, {self.documents_out:,} out"
            f"{'; dropped: ' + drops if drops else ''}"
            f"; {self.bytes_in / 1e6:.1f} MB in {seconds:.1f} s"
            f" ({self.bytes_in / 1e6 / seconds:.1f} MB/s)"
        )

    def write(self, path: str) -> None:
        with atomic_write(path, "w") as handle:
            json.dump(self.to_json(), handle, indent=2)
            handle.write("\n")

    def finish(self, stats_file: str | None = None) -> None:
        """The summary line on stderr, and the JSON in ``stats_file`` when given."""
        info(self.summary_line())
        if stats_file:
            self.write(stats_file)
