"""Dedup as stages over files, each runnable as its own task (a Slurm array, ``xargs -P``), and
the same stages in one process: ``gpt2 corpus dedup`` and ``dedup-signatures``,
``dedup-buckets``, ``dedup-clusters``, ``dedup-filter``.

1. ``signatures`` (one task per part): a part's exact and LSH band keys -> a signatures file.
2. ``buckets`` (one task per bucket): every part's signatures -> the edges of one bucket.
3. ``clusters`` (one task): every bucket's edges and every part's signatures -> clusters.
4. ``apply_part`` (one task per part): a part's kept documents, once its input is checked to
   be the part its signatures were made from.

The algorithms are ``gpt2cli.corpus.dedup``'s; the files ``gpt2cli.corpus.dedup_files``'. Each
stage checks that its files belong together (same settings, same parts in the same order,
every bucket once) before it writes anything.
"""

from __future__ import annotations

import hashlib
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np

from gpt2cli.console import Stopwatch
from gpt2cli.corpus import dedup, dedup_files
from gpt2cli.corpus.common_options import RecordOptions
from gpt2cli.corpus.jsonl import (
    JsonlWriter,
    Record,
    Track,
    read_records,
    untracked,
)
from gpt2cli.corpus.stats import StageStats
from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.fileio import atomic_write, spool_stdin

# ---------------------------------------------------------------------------------------------
# applying clusters: the kept documents and the removal report


def apply_clusters(
    sources: list[str],
    labels: list[str],
    options: RecordOptions,
    representative: np.ndarray,
    reason: np.ndarray,
    offset: int,
    stats: StageStats,
    out: BinaryIO,
) -> int:
    """Write the kept documents of ``sources`` (numbered from ``offset``) to ``out`` and the
    removed ones to the removal report; returns the number of documents read."""
    quiet = StageStats(stats.stage, show_bad=0)
    kept = JsonlWriter(out)
    index = offset
    report_file = options.removed_report
    with atomic_write(report_file, "wb") if report_file else nullcontext(None) as report:
        removed = JsonlWriter(report) if report is not None else None
        for record in read_records(sources, options.field, quiet, labels=labels):
            why = int(reason[index])
            if why == dedup.KEPT:
                kept.write_raw(record.raw)
                stats.count_out()
            else:
                stats.drop(f"{dedup.REASONS[why]}_duplicate")
                if removed is not None:
                    removed.write_object(_removal(record, index, int(representative[index]), why))
            index += 1
        kept.flush()
        if removed is not None:
            removed.flush()
    return index - offset


def _removal(record: Record, index: int, kept: int, why: int) -> dict[str, Any]:
    entry = {
        "document": index,
        "kept": kept,
        "reason": dedup.REASONS[why],
        "source": record.source,
        "line": record.line,
    }
    for name in ("id", "url"):
        if name in record.data:
            entry[name] = record.data[name]
    return entry


def _cluster_count(reason: np.ndarray, representative: np.ndarray) -> int:
    removed = reason != dedup.KEPT
    return int(len(set(representative[removed].tolist()))) if removed.any() else 0


# ---------------------------------------------------------------------------------------------
# one process


def dedup_inputs(
    inputs: list[str],
    params: dedup.DedupParams,
    options: RecordOptions,
    out: BinaryIO,
    track: Track = untracked,
) -> StageStats:
    """``gpt2 corpus dedup``: the four stages in one process (stdin is read twice through a
    temp copy)."""
    stats = StageStats("dedup", strict=options.strict)
    with spool_stdin(inputs, prefix="gpt2-dedup") as sources:
        records = read_records(sources, options.field, stats, labels=inputs)
        part = dedup.signatures(track(records, stats, "signatures"), params)
        edges = dedup.bucket_edges([part])
        representative, reason = dedup.resolve_parts([part], [edges], params.keep)
        apply_clusters(sources, inputs, options, representative, reason, 0, stats, out)
    stats.extra.update(
        params=params.key() | {"keep": params.keep},
        clusters=_cluster_count(reason, representative),
    )
    return stats


# ---------------------------------------------------------------------------------------------
# stage 1: signatures


def signatures(
    inputs: list[str],
    output: Path,
    params: dedup.DedupParams,
    options: RecordOptions,
    track: Track = untracked,
) -> StageStats:
    stats = StageStats("dedup-signatures", strict=options.strict)
    digest = hashlib.blake2b(digest_size=16)
    records = read_records(inputs, options.field, stats, digest)
    part = dedup.signatures(track(records, stats, "signatures"), params)
    meta = {
        "kind": "signatures",
        "params": params.key(),
        "documents": part.documents,
        "digest": digest.hexdigest(),
        "source": " ".join(inputs),
    }
    # keys band by band (bands, N): a bucket task reads each band's column contiguously
    columns = {"exact": part.exact, "band_keys": part.keys.T, "karma": part.karma}
    dedup_files.write_arrays(output, meta, columns)
    stats.count_out(part.documents)
    stats.extra["output"] = str(output)
    return stats


@dataclass
class _Part:
    path: Path
    meta: dict[str, Any]
    signatures: dedup.Signatures

    def record(self) -> dict[str, Any]:
        """What identifies the part in the files of the later stages."""
        return {k: self.meta[k] for k in ("documents", "digest", "source")}


def _require(ok: bool, path: Path, what: str, kind: str) -> None:
    if not ok:
        raise dedup_files.damaged(path, what, kind)


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _part(path: Path, meta: dict[str, Any], data: dict[str, np.ndarray]) -> _Part:
    """A signatures file's part, its metadata checked against its arrays."""
    documents, params = meta.get("documents"), meta.get("params")
    _require(_is_count(documents), path, "no document count", "signatures")
    _require(isinstance(params, dict), path, "no settings", "signatures")
    _require(
        all(isinstance(meta.get(k), str) for k in ("digest", "source")),
        path,
        "no digest",
        "signatures",
    )
    bands = data["band_keys"].shape[0]
    _require(
        len(data["exact"]) == len(data["karma"]) == data["band_keys"].shape[1] == documents
        and bands == params.get("bands"),
        path,
        "arrays of other sizes than its header says",
        "signatures",
    )
    return _Part(path, meta, dedup.Signatures(data["exact"], data["band_keys"].T, data["karma"]))


def _check_parts(parts: list[_Part]) -> None:
    if not parts:
        raise UsageError("give every part's signature file, in the parts' order")
    for part in parts[1:]:
        if part.meta["params"] != parts[0].meta["params"]:
            raise Gpt2Error(f"{part.path}: made with other settings than {parts[0].path}")


def _read_parts(paths: list[Path]) -> list[_Part]:
    parts = [_part(path, *dedup_files.read_arrays(path, "signatures")) for path in paths]
    _check_parts(parts)
    return parts


# ---------------------------------------------------------------------------------------------
# stage 2: buckets


@dataclass
class BucketResult:
    documents: int
    parts: int
    edges: int
    seconds: float


def buckets(signature_files: list[Path], output: Path, bucket: int, count: int) -> BucketResult:
    """The edges of bucket ``bucket`` of ``count``, from every part's signatures."""
    if count < 1 or not 0 <= bucket < count:
        raise UsageError(f"--bucket must be from 0 to --buckets - 1 ({count - 1}), not {bucket}")
    timer = Stopwatch()
    parts = _read_parts(signature_files)
    signatures_of = [part.signatures for part in parts]
    edges = dedup.bucket_edges(signatures_of, bucket, count)
    meta = {
        "kind": "edges",
        "params": parts[0].meta["params"],
        "parts": [part.record() for part in parts],
        "bucket": bucket,
        "buckets": count,
    }
    dedup_files.write_arrays(output, meta, {"edges": edges})
    documents = sum(s.documents for s in signatures_of)
    return BucketResult(documents, len(parts), len(edges), timer.seconds)


# ---------------------------------------------------------------------------------------------
# stage 3: clusters


@dataclass
class ClusterResult:
    documents: int
    parts: int
    edges: int
    removed: int
    exact: int
    seconds: float


def clusters(
    files: list[Path], signature_files: list[Path], output: Path, keep: str
) -> ClusterResult:
    """Clusters of every bucket's edges. ``files`` are edge files and signature files in any
    mix (told apart by their headers); the signature files count in the order given, those
    of ``signature_files`` first."""
    dedup.check_keep(keep)
    timer = Stopwatch()
    parts = [_part(path, *dedup_files.read_arrays(path, "signatures")) for path in signature_files]
    edge_files: list[tuple[Path, dict[str, Any], np.ndarray]] = []
    for path in files:
        meta, data = dedup_files.read_arrays(path)
        if meta["kind"] == "signatures":
            parts.append(_part(path, meta, data))
        elif meta["kind"] == "edges":
            edge_files.append((path, meta, data["edges"]))
        else:
            raise Gpt2Error(f"{path}: holds {meta['kind']}, not edges or signatures")
    _check_parts(parts)
    expected = [part.record() for part in parts]
    params = parts[0].meta["params"]
    documents = sum(part.signatures.documents for part in parts)
    seen: set[int] = set()
    all_edges = []
    count = None
    for path, meta, edges in edge_files:
        if meta.get("parts") != expected or meta.get("params") != params:
            raise Gpt2Error(f"{path}: built from other signature files (or another order)")
        bucket, buckets_of = meta.get("bucket"), meta.get("buckets")
        _require(
            _is_count(bucket) and _is_count(buckets_of) and bucket < buckets_of,
            path,
            f"bucket {bucket!r} of {buckets_of!r}",
            "edges",
        )
        count = count or buckets_of
        if buckets_of != count or bucket in seen:
            raise Gpt2Error(
                f"{path}: bucket {bucket} of {buckets_of} repeats or belongs to another split"
            )
        _require(
            len(edges) == 0 or (edges.min() >= 0 and edges.max() < documents),
            path,
            "an edge names a document beyond the parts",
            "edges",
        )
        seen.add(bucket)
        all_edges.append(edges)
    if count is None or len(seen) != count:
        missing = sorted(set(range(count or 1)) - seen)
        raise Gpt2Error(f"buckets missing: {', '.join(map(str, missing))}")
    signatures_of = [part.signatures for part in parts]
    representative, reason = dedup.resolve_parts(signatures_of, all_edges, keep)
    offsets = [sum(s.documents for s in signatures_of[:i]) for i in range(len(parts))]
    meta = {"kind": "clusters", "params": params, "parts": expected,
            "offsets": offsets, "keep": keep}  # fmt: skip
    dedup_files.write_arrays(output, meta, {"representative": representative, "reason": reason})
    return ClusterResult(
        documents,
        len(parts),
        sum(map(len, all_edges)),
        int((reason != dedup.KEPT).sum()),
        int((reason == dedup.EXACT).sum()),
        timer.seconds,
    )


# ---------------------------------------------------------------------------------------------
# stage 4: apply


def _read_clusters(path: Path) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    meta, data = dedup_files.read_arrays(path, "clusters")
    parts, offsets = meta.get("parts"), meta.get("offsets")
    representative, reason = data["representative"], data["reason"]
    documents = len(reason)
    _require(
        isinstance(parts, list)
        and isinstance(offsets, list)
        and len(parts) == len(offsets)
        and all(isinstance(p, dict) and _is_count(p.get("documents")) for p in parts)
        and offsets == [sum(p["documents"] for p in parts[:i]) for i in range(len(parts))]
        and sum(p["documents"] for p in parts) == documents == len(representative),
        path,
        "parts and arrays of other sizes than its header says",
        "clusters",
    )
    _require(
        documents == 0
        or (
            representative.min() >= 0
            and representative.max() < documents
            and int(reason.max()) <= dedup.NEAR
        ),
        path,
        "a document number or reason out of range",
        "clusters",
    )
    return meta, representative, reason


def apply_part(
    inputs: list[str], clusters_file: Path, part: int, options: RecordOptions, out: BinaryIO
) -> StageStats:
    """Part ``part``'s kept documents to ``out``, after a pass that checks the input is the
    part its signatures were made from (so a wrong input writes nothing)."""
    meta, representative, reason = _read_clusters(clusters_file)
    if not 0 <= part < len(meta["parts"]):
        raise UsageError(f"--part must be from 0 to {len(meta['parts']) - 1}, not {part}")
    expected = meta["parts"][part]
    stats = StageStats("dedup-filter", strict=options.strict)
    digest = hashlib.blake2b(digest_size=16)
    with spool_stdin(inputs, prefix="gpt2-dedup") as sources:
        for _ in read_records(sources, options.field, stats, digest, labels=inputs):
            pass
        if digest.hexdigest() != expected.get("digest"):
            raise Gpt2Error(
                f"{' '.join(inputs)}: not the input of part {part} ({expected.get('source')})",
                "give each part the files its signatures were computed from",
            )
        offset = meta["offsets"][part]
        apply_clusters(sources, inputs, options, representative, reason, offset, stats, out)
    return stats
