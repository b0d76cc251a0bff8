"""The results of ``gpt2 overlap check`` and their JSON schema: one record per input (or per
document), the total, the probe, the kept and removed counts of a decontamination, and the
inputs that could not be read."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from gpt2cli.errors import Gpt2Error

if TYPE_CHECKING:
    from gpt2cli.overlap.check import CheckOptions, CheckReport, Counts, ProbeResult
    from gpt2cli.overlap.filter_file import BloomFilter


def counts_record(counts: Counts, fp_rate: float, per_doc: bool) -> dict:
    """One input's (or, with ``per_doc``, one document's) n-grams, found and percent."""
    record: dict = {"source": counts.name}
    if per_doc:
        record["document"] = counts.index
        record["line"] = counts.line
    else:
        record["documents"] = counts.documents
    percent = counts.percent
    record.update(
        ngrams=counts.ngrams,
        found=counts.found,
        percent=None if percent is None else round(percent, 6),
        estimated_fp_rate=fp_rate,
    )
    return record


@dataclass
class CheckResult:
    bloom_filter: BloomFilter
    options: CheckOptions
    report: CheckReport
    inputs: list[str]  # the inputs checked (none: a probe only)
    seconds: float
    probe: ProbeResult | None = None

    @property
    def fp_rate(self) -> float:
        return self.bloom_filter.estimated_fp_rate

    def record(self, counts: Counts, per_doc: bool | None = None) -> dict:
        per_doc = self.options.per_doc if per_doc is None else per_doc
        return counts_record(counts, self.fp_rate, per_doc)

    def row_records(self) -> list[dict]:
        return [self.record(row) for row in self.report.rows]

    def failure_records(self) -> list[dict]:
        return [{"source": f.source, "error": f.reason} for f in self.report.failures]

    def probe_record(self) -> dict | None:
        if self.probe is None:
            return None
        return {
            "probes": self.probe.probes,
            "false_positives": self.probe.false_positives,
            "measured_fp_rate": self.probe.measured_fp_rate,
            "estimated_fp_rate": self.probe.estimated_fp_rate,
            "seed": self.options.seed,
        }

    def to_dict(self) -> dict:
        """The ``--json`` report."""
        ran = bool(self.inputs)
        document = {
            "filter": self.bloom_filter.summary(),
            ("documents" if self.options.per_doc else "inputs"): self.row_records(),
            "total": self.record(self.report.total, False) if ran else None,
        }
        probe = self.probe_record()
        if probe is not None:
            document["probe"] = probe
        if self.options.exclude:
            document["kept"] = self.report.kept
            document["removed"] = self.report.removed
        if ran:
            document["failures"] = self.failure_records()
        return document

    def warnings(self) -> list[str]:
        """What makes the figures meaningless: no documents, or none long enough."""
        if not self.inputs:
            return []
        if self.report.total.documents == 0:
            return ["empty input: no documents to check"]
        if self.report.total.ngrams == 0:
            n = self.bloom_filter.header.n
            return [f"no document has {n} words: zero n-grams to check"]
        return []

    def raise_if_failed(self) -> None:
        """Exit 1 when an input could not be read (after the others were reported)."""
        failures = self.report.failures
        if failures:
            raise Gpt2Error(
                f"{len(failures)} of {len(self.inputs)} inputs could not be read: "
                + ", ".join(failure.source for failure in failures),
                "the report covers the others",
            )
