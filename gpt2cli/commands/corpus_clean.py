"""``gpt2 corpus filter`` and ``gpt2 corpus dedup`` (one process or staged per part)."""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable, Iterator
from contextlib import ExitStack
from pathlib import Path

import typer

from gpt2cli import console
from gpt2cli.corpus import arrays, dedup, filters, quality
from gpt2cli.corpus.jsonl import JsonlWriter, Record, read_records
from gpt2cli.corpus.stats import StageStats
from gpt2cli.corpus.urls import load_domains
from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.fileio import atomic_write, os_errors

FILES = typer.Argument(None, help="JSON Lines inputs; '-' or none reads stdin.", show_default=False)
FIELD = typer.Option("text", "--field", help="JSON field that holds the text.")
STATS = typer.Option(
    None, "--stats", help="Also write the counters as JSON to this file.", show_default=False
)
STRICT = typer.Option(
    False, "--strict", help="Stop at the first bad record instead of counting and skipping it."
)
NGRAM = typer.Option(5, "--ngram", help="Words per shingle.")
NUM_PERM = typer.Option(128, "--num-perm", help="MinHash signature length.")
NEAR = typer.Option(
    0.5,
    "--near",
    help="Jaccard threshold of near duplicates; LSH bands and rows are chosen from it and "
    "--num-perm (0.5 and 128: 25 bands of 5).",
)
EXACT_ONLY = typer.Option(False, "--exact-only", help="Remove exact duplicates only (no MinHash).")
KEEP = typer.Option(
    "first", "--keep", help="Which document of a cluster stays: first, or karma (the highest)."
)
KARMA_FIELD = typer.Option("karma", "--karma-field", help="JSON field of --keep karma.")
CLUSTERS_REPORT = typer.Option(
    None,
    "--clusters",
    help="Write one JSON line per removed document: its number, the number of the document "
    "kept in its place and the reason (exact or near).",
    show_default=False,
)


def _tracked(records: Iterable[Record], stats: StageStats, label: str) -> Iterator[Record]:
    """Records as they come, with a progress line on stderr when it is a terminal."""
    with console.progress() as bar:
        task = bar.add_task(label, total=None, status="")
        for count, record in enumerate(records, start=1):
            if count % 1000 == 0:
                bar.update(task, completed=count, status=f"{stats.bytes_in / 1e6:,.1f} MB")
            yield record


def _reason(rule: str) -> str:
    return rule.replace("-", "_")


# ---------------------------------------------------------------------------------------------
# filter


def filter_command(
    inputs: list[str],
    config: filters.FilterConfig,
    field: str,
    rejected: Path | None,
    stats_file: str | None,
    strict: bool,
) -> None:
    rule_set = filters.Filter(config)
    stats = StageStats("filter", strict=strict)
    stats.extra["rules"] = rule_set.names
    out = JsonlWriter(sys.stdout.buffer)
    with ExitStack() as stack:
        dropped = None
        if rejected is not None:
            dropped = JsonlWriter(stack.enter_context(atomic_write(rejected, "wb")))
        for record in _tracked(read_records(inputs, field, stats), stats, "filter"):
            verdict = rule_set.verdict(record.data, record.text)
            if verdict is None:
                out.write_raw(record.raw)
                stats.count_out()
                continue
            stats.drop(_reason(verdict.rule))
            if dropped is not None:
                dropped.write_object(
                    {**record.data, "rejected_by": verdict.rule, "rejected_value": verdict.value}
                )
        out.flush()
        if dropped is not None:
            dropped.flush()
    stats.finish(stats_file)


def _list_rules() -> None:
    for name, default, what in filters.rule_table():
        print(f"{name:20} {default:22} {what}")


# ---------------------------------------------------------------------------------------------
# dedup


def _params(near: float, exact_only: bool, ngram: int, num_perm: int, keep: str, karma: str):
    if keep not in ("first", "karma"):
        raise UsageError(f"--keep is first or karma, not {keep!r}")
    if not exact_only and not 0.0 < near < 1.0:
        raise UsageError(f"--near is a Jaccard similarity between 0 and 1, not {near:g}")
    if ngram < 1 or num_perm < 1:
        raise UsageError("--ngram and --num-perm must be at least 1")
    return dedup.DedupParams.make(None if exact_only else near, ngram, num_perm, keep, karma)


def _spool(inputs: list[str]) -> tuple[list[str], Path | None]:
    """stdin copied to a temp file, so that it can be read twice."""
    if "-" not in inputs:
        return inputs, None
    import shutil
    import tempfile

    fd, name = tempfile.mkstemp(prefix=".gpt2-dedup-stdin.", suffix=".tmp")
    with os.fdopen(fd, "wb") as spool:
        shutil.copyfileobj(sys.stdin.buffer, spool, 1 << 22)
    return [name if item == "-" else item for item in inputs], Path(name)


def _apply(
    inputs: list[str],
    field: str,
    representative: object,
    reason: object,
    offset: int,
    stats: StageStats,
    report: Path | None,
    labels: list[str] | None = None,
) -> int:
    """Write the kept documents of ``inputs`` (numbered from ``offset``); returns the count."""
    quiet = StageStats("dedup", show_bad=0)
    labels = labels or inputs
    out = JsonlWriter(sys.stdout.buffer)
    index = offset
    with ExitStack() as stack:
        removed = JsonlWriter(stack.enter_context(atomic_write(report, "wb"))) if report else None
        for record in read_records(inputs, field, quiet, labels=labels):
            why = int(reason[index])
            if why == dedup.KEPT:
                out.write_raw(record.raw)
                stats.count_out()
            else:
                stats.drop(f"{dedup.REASONS[why]}_duplicate")
                if removed is not None:
                    entry = {
                        "document": index,
                        "kept": int(representative[index]),
                        "reason": dedup.REASONS[why],
                        "source": record.source,
                        "line": record.line,
                    }
                    for name in ("id", "url"):
                        if name in record.data:
                            entry[name] = record.data[name]
                    removed.write_object(entry)
            index += 1
        out.flush()
        if removed is not None:
            removed.flush()
    return index - offset


def dedup_command(
    inputs: list[str],
    params: dedup.DedupParams,
    field: str,
    report: Path | None,
    stats_file: str | None,
    strict: bool,
) -> None:
    stats = StageStats("dedup", strict=strict)
    sources, spooled = _spool(inputs)
    try:
        records = read_records(sources, field, stats, labels=inputs)
        part = dedup.signatures(_tracked(records, stats, "signatures"), params)
        edges = dedup.bucket_edges([part])
        representative, reason = dedup.resolve_parts([part], [edges], params.keep)
        _apply(sources, field, representative, reason, 0, stats, report, inputs)
    finally:
        if spooled is not None:
            spooled.unlink(missing_ok=True)
    stats.extra.update(_params_record(params), clusters=_cluster_count(reason, representative))
    stats.finish(stats_file)


def _params_record(params: dedup.DedupParams) -> dict:
    return {"params": params.key() | {"keep": params.keep}}


def _cluster_count(reason, representative) -> int:
    removed = reason != dedup.KEPT
    return int(len(set(representative[removed].tolist()))) if removed.any() else 0


# ---------------------------------------------------------------------------------------------
# staged dedup


def _part_record(meta: dict) -> dict:
    return {"documents": meta["documents"], "digest": meta["digest"], "source": meta["source"]}


def signatures_command(
    inputs: list[str], output: Path, params: dedup.DedupParams, field: str, stats_file, strict
) -> None:
    stats = StageStats("dedup-signatures", strict=strict)
    digest = hashlib.blake2b(digest_size=16)
    records = read_records(inputs, field, stats, digest)
    part = dedup.signatures(_tracked(records, stats, "signatures"), params)
    meta = {
        "kind": "signatures",
        "params": params.key(),
        "documents": part.documents,
        "digest": digest.hexdigest(),
        "source": " ".join(inputs),
    }
    # keys band by band (bands, N): a bucket task reads each band's column contiguously
    columns = {"exact": part.exact, "band_keys": part.keys.T, "karma": part.karma}
    arrays.write_arrays(output, meta, columns)
    stats.count_out(part.documents)
    stats.extra["output"] = str(output)
    stats.finish(stats_file)


def _read_parts(paths: list[Path]) -> tuple[list[dict], list[dedup.Signatures]]:
    metas, parts = [], []
    for path in paths:
        meta, data = arrays.read_arrays(path, "signatures")
        if metas and meta["params"] != metas[0]["params"]:
            raise Gpt2Error(f"{path}: made with other settings than {paths[0]}")
        metas.append(meta)
        parts.append(dedup.Signatures(data["exact"], data["band_keys"].T, data["karma"]))
    return metas, parts


def buckets_command(signature_files: list[Path], output: Path, bucket: int, buckets: int) -> None:
    if buckets < 1 or not 0 <= bucket < buckets:
        raise UsageError(f"--bucket must be from 0 to --buckets - 1 ({buckets - 1}), not {bucket}")
    timer = console.Stopwatch()
    metas, parts = _read_parts(signature_files)
    edges = dedup.bucket_edges(parts, bucket, buckets)
    meta = {
        "kind": "edges",
        "params": metas[0]["params"],
        "parts": [_part_record(m) for m in metas],
        "bucket": bucket,
        "buckets": buckets,
    }
    arrays.write_arrays(output, meta, {"edges": edges})
    console.info(
        f"gpt2 corpus dedup-buckets: bucket {bucket} of {buckets}: "
        f"{sum(p.documents for p in parts):,} documents in {len(parts)} parts, "
        f"{len(edges):,} edges -> {output} in {timer.seconds:.1f} s"
    )


def clusters_command(
    edge_files: list[Path], signature_files: list[Path], output: Path, keep: str
) -> None:
    if keep not in ("first", "karma"):
        raise UsageError(f"--keep is first or karma, not {keep!r}")
    timer = console.Stopwatch()
    metas, parts = _read_parts(signature_files)
    expected = [_part_record(m) for m in metas]
    seen: set[int] = set()
    all_edges = []
    buckets = None
    for path in edge_files:
        meta, data = arrays.read_arrays(path, "edges")
        if meta["parts"] != expected or meta["params"] != metas[0]["params"]:
            raise Gpt2Error(f"{path}: built from other signature files (or another order)")
        buckets = buckets or meta["buckets"]
        if meta["buckets"] != buckets or meta["bucket"] in seen:
            raise Gpt2Error(f"{path}: bucket {meta['bucket']} of {meta['buckets']} repeats or "
                            f"belongs to another split")  # fmt: skip
        seen.add(meta["bucket"])
        all_edges.append(data["edges"])
    if buckets is None or len(seen) != buckets:
        missing = sorted(set(range(buckets or 1)) - seen)
        raise Gpt2Error(f"buckets missing: {', '.join(map(str, missing))}")
    documents = sum(p.documents for p in parts)
    representative, reason = dedup.resolve_parts(parts, all_edges, keep)
    offsets = [sum(p.documents for p in parts[:i]) for i in range(len(parts))]
    meta = {"kind": "clusters", "params": metas[0]["params"], "parts": expected,
            "offsets": offsets, "keep": keep}  # fmt: skip
    arrays.write_arrays(output, meta, {"representative": representative, "reason": reason})
    removed = int((reason != dedup.KEPT).sum())
    console.info(
        f"gpt2 corpus dedup-clusters: {documents:,} documents in {len(parts)} parts, "
        f"{sum(map(len, all_edges)):,} edges: {removed:,} duplicates "
        f"({int((reason == dedup.EXACT).sum()):,} exact) -> {output} in {timer.seconds:.1f} s"
    )


def apply_command(
    inputs: list[str], clusters: Path, part: int, field: str, report, stats_file, strict
) -> None:
    meta, data = arrays.read_arrays(clusters, "clusters")
    if not 0 <= part < len(meta["parts"]):
        raise UsageError(f"--part must be from 0 to {len(meta['parts']) - 1}, not {part}")
    expected = meta["parts"][part]
    stats = StageStats("dedup-filter", strict=strict)
    digest = hashlib.blake2b(digest_size=16)
    sources, spooled = _spool(inputs)
    try:
        # the input is checked first, on a pass of its own: no output from the wrong input
        for _ in read_records(sources, field, stats, digest, labels=inputs):
            pass
        if digest.hexdigest() != expected["digest"]:
            raise Gpt2Error(
                f"{' '.join(inputs)}: not the input of part {part} ({expected['source']})",
                "give each part the files its signatures were computed from",
            )
        offset = meta["offsets"][part]
        representative, reason = data["representative"], data["reason"]
        _apply(sources, field, representative, reason, offset, stats, report, inputs)
    finally:
        if spooled is not None:
            spooled.unlink(missing_ok=True)
    stats.finish(stats_file)


# ---------------------------------------------------------------------------------------------
# the verbs


def register(corpus_app: typer.Typer) -> None:
    """Add ``filter``, ``dedup`` and the staged-dedup verbs to the ``corpus`` sub-app."""

    @corpus_app.command("filter")
    def filter_verb(
        files: list[str] = FILES,
        exclude_domain: list[str] = typer.Option(
            None,
            "--exclude-domain",
            help="Drop documents whose url (or domain field) is on this domain or a "
            "subdomain of it (repeatable), e.g. wikipedia.org.",
            show_default=False,
        ),
        exclude_domain_file: list[str] = typer.Option(
            None,
            "--exclude-domain-file",
            help="Drop the domains listed in this file, one a line, # comments (repeatable).",
            show_default=False,
        ),
        url_field: str = typer.Option("url", "--url-field", help="JSON field of the url."),
        min_words: int = typer.Option(0, "--min-words", help="Fewest words (0: no limit)."),
        max_words: int = typer.Option(0, "--max-words", help="Most words (0: no limit)."),
        min_tokens: int = typer.Option(
            0, "--min-tokens", help="Fewest GPT-2 tokens (OpenWebText: 128; 0: no limit)."
        ),
        max_tokens: int = typer.Option(0, "--max-tokens", help="Most GPT-2 tokens (0: none)."),
        lang: list[str] = typer.Option(
            [],
            "--lang",
            help="Keep documents in this language (ISO 639-1 code, repeatable), as py3langid "
            "identifies it from the first 1500 characters.",
            show_default=False,
        ),
        lang_score: float = typer.Option(
            0.5, "--lang-score", help="Lowest probability of the identified language."
        ),
        threshold: list[str] = typer.Option(
            [],
            "--threshold",
            help="RULE=VALUE: another threshold for a quality rule (repeatable).",
            show_default=False,
        ),
        disable: list[str] = typer.Option(
            [], "--disable", help="Switch a rule off (repeatable).", show_default=False
        ),
        enable: list[str] = typer.Option(
            [],
            "--enable",
            help="Switch on a rule that is off by default (repeatable).",
            show_default=False,
        ),
        no_quality: bool = typer.Option(
            False, "--no-quality", help="Switch every quality rule off."
        ),
        rejected: Path = typer.Option(
            None,
            "--rejected",
            help="Write every dropped document here, with rejected_by (the rule) and "
            "rejected_value (what it measured).",
            show_default=False,
        ),
        list_rules: bool = typer.Option(
            False, "--list-rules", help="Print the rules, their defaults and thresholds."
        ),
        field: str = FIELD,
        stats_file: str = STATS,
        strict: bool = STRICT,
    ) -> None:
        """Drop documents by named rules (domain, length, language, quality), each counted;
        the kept ones go to stdout unchanged, in input order."""
        if list_rules:
            _list_rules()
            return
        filters.check_rule_names(set(disable), "--disable")
        filters.check_rule_names(set(enable), "--enable")
        off = set(disable)
        if no_quality:
            off.update(rule.name for rule in quality.RULES)
        for name, value in ((min_words, "--min-words"), (min_tokens, "--min-tokens")):
            if name < 0:
                raise UsageError(f"{value} must be at least 0")
        config = filters.FilterConfig(
            exclude_domains=frozenset(load_domains(exclude_domain, exclude_domain_file)),
            url_field=url_field,
            min_words=min_words,
            max_words=max_words,
            min_tokens=min_tokens,
            max_tokens=max_tokens,
            languages=frozenset(code.lower() for code in lang),
            lang_score=lang_score,
            thresholds=dict(filters.parse_threshold(entry) for entry in threshold),
            disabled=frozenset(off),
            enabled=frozenset(enable),
        )
        with os_errors():
            filter_command(files or ["-"], config, field, rejected, stats_file, strict)

    @corpus_app.command("dedup")
    def dedup_verb(
        files: list[str] = FILES,
        near: float = NEAR,
        exact_only: bool = EXACT_ONLY,
        ngram: int = NGRAM,
        num_perm: int = NUM_PERM,
        keep: str = KEEP,
        karma_field: str = KARMA_FIELD,
        clusters: Path = CLUSTERS_REPORT,
        field: str = FIELD,
        stats_file: str = STATS,
        strict: bool = STRICT,
    ) -> None:
        """Remove exact duplicates (same lower-cased words) and near duplicates (MinHash LSH
        over word n-grams); one document of each cluster stays, in input order."""
        params = _params(near, exact_only, ngram, num_perm, keep, karma_field)
        with os_errors():
            dedup_command(files or ["-"], params, field, clusters, stats_file, strict)

    @corpus_app.command("dedup-signatures")
    def signatures_verb(
        files: list[str] = FILES,
        output: Path = typer.Option(..., "--output", "-o", help="The signature file to write."),
        near: float = NEAR,
        exact_only: bool = EXACT_ONLY,
        ngram: int = NGRAM,
        num_perm: int = NUM_PERM,
        karma_field: str = KARMA_FIELD,
        field: str = FIELD,
        stats_file: str = STATS,
        strict: bool = STRICT,
    ) -> None:
        """Staged dedup, stage 1 (one task per part): exact keys and LSH band keys."""
        params = _params(near, exact_only, ngram, num_perm, "first", karma_field)
        with os_errors():
            signatures_command(files or ["-"], output, params, field, stats_file, strict)

    signature_files = typer.Option(
        ...,
        "--signatures",
        "-s",
        help="Every part's signature file, in the parts' order (repeatable).",
    )

    @corpus_app.command("dedup-buckets")
    def buckets_verb(
        signatures: list[Path] = signature_files,
        output: Path = typer.Option(..., "--output", "-o", help="The edge file to write."),
        bucket: int = typer.Option(0, "--bucket", help="This task's bucket, 0 to --buckets - 1."),
        buckets: int = typer.Option(1, "--buckets", help="How many bucket tasks there are."),
    ) -> None:
        """Staged dedup, stage 2 (one task per bucket): edges between documents that share
        a key whose hash falls in this bucket."""
        with os_errors():
            buckets_command(signatures, output, bucket, buckets)

    @corpus_app.command("dedup-clusters")
    def clusters_verb(
        edges: list[Path] = typer.Argument(..., help="Every bucket's edge file."),
        signatures: list[Path] = signature_files,
        output: Path = typer.Option(..., "--output", "-o", help="The cluster file to write."),
        keep: str = KEEP,
    ) -> None:
        """Staged dedup, stage 3 (one task): clusters of all edges and the document each keeps."""
        with os_errors():
            clusters_command(edges, signatures, output, keep)

    @corpus_app.command("dedup-filter")
    def apply_verb(
        files: list[str] = FILES,
        clusters_file: Path = typer.Option(
            ..., "--clusters-file", "-c", help="The file of dedup-clusters."
        ),
        part: int = typer.Option(
            ..., "--part", help="This part's number in the --signatures order of the stages."
        ),
        report: Path = CLUSTERS_REPORT,
        field: str = FIELD,
        stats_file: str = STATS,
        strict: bool = STRICT,
    ) -> None:
        """Staged dedup, stage 4 (one task per part): this part's kept documents to stdout."""
        with os_errors():
            apply_command(files or ["-"], clusters_file, part, field, report, stats_file, strict)
