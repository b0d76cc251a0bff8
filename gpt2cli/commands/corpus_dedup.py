"""``gpt2 corpus dedup`` (one process) and the staged dedup's verbs (one task per part or
bucket): options in, ``gpt2cli.corpus.staged_dedup`` does the work."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import typer

from gpt2cli import console
from gpt2cli.commands import options
from gpt2cli.commands.corpus_clean import FILES, STATS, TEXT, tracked
from gpt2cli.corpus import dedup, staged_dedup
from gpt2cli.corpus.common_options import RecordOptions
from gpt2cli.corpus.dedup import DedupOptions
from gpt2cli.fileio import os_errors

# what the signatures stage reads of the dedup options (--keep is the cluster stage's)
SIGNATURE_FIELDS = ("near", "exact_only", "ngram", "num_perm", "karma_field")


# ---------------------------------------------------------------------------------------------
# dedup, one process and staged (gpt2cli.corpus.staged_dedup)


def dedup_command(
    inputs: list[str], params: dedup.DedupParams, options: RecordOptions, stats_file: str | None
) -> None:
    stats = staged_dedup.dedup_inputs(inputs, params, options, sys.stdout.buffer, tracked)
    stats.finish(stats_file)


def signatures_command(
    inputs: list[str],
    output: Path,
    params: dedup.DedupParams,
    options: RecordOptions,
    stats_file: str | None,
) -> None:
    stats = staged_dedup.signatures(inputs, output, params, options, tracked)
    stats.finish(stats_file)


def buckets_command(signature_files: list[Path], output: Path, bucket: int, buckets: int) -> None:
    result = staged_dedup.buckets(signature_files, output, bucket, buckets)
    console.info(
        f"gpt2 corpus dedup-buckets: bucket {bucket} of {buckets}: "
        f"{result.documents:,} documents in {result.parts} parts, "
        f"{result.edges:,} edges -> {output} in {result.seconds:.1f} s"
    )


def clusters_command(
    files: list[Path], signature_files: list[Path], output: Path, keep: str
) -> None:
    result = staged_dedup.clusters(files, signature_files, output, keep)
    console.info(
        f"gpt2 corpus dedup-clusters: {result.documents:,} documents in {result.parts} parts, "
        f"{result.edges:,} edges: {result.removed:,} duplicates "
        f"({result.exact:,} exact) -> {output} in {result.seconds:.1f} s"
    )


def apply_command(
    inputs: list[str], clusters: Path, part: int, options: RecordOptions, stats_file: str | None
) -> None:
    stats = staged_dedup.apply_part(inputs, clusters, part, options, sys.stdout.buffer)
    stats.finish(stats_file)


# ---------------------------------------------------------------------------------------------
# the verbs


def register(corpus_app: typer.Typer) -> None:
    """Add ``dedup`` and the staged-dedup verbs to the ``corpus`` sub-app."""

    @corpus_app.command("dedup")
    @options.with_fields(RecordOptions, {"removed_report": "karma_field", "strict": "stats_file"})
    @options.with_fields(DedupOptions, {"near": "files"})
    def dedup_verb(files: list[str] = FILES, stats_file: str = STATS, **given: Any) -> None:
        """Remove exact duplicates (same lower-cased words) and near duplicates (MinHash LSH
        over word n-grams); one document of each cluster stays, in input order."""
        params = options.build(DedupOptions, given).params()
        reading = options.build(RecordOptions, given)
        with os_errors():
            dedup_command(files or ["-"], params, reading, stats_file)

    @corpus_app.command("dedup-signatures")
    @options.with_fields(RecordOptions, {"field": "karma_field", "strict": "stats_file"}, only=TEXT)
    @options.with_fields(DedupOptions, {"near": "output"}, only=SIGNATURE_FIELDS)
    def signatures_verb(
        files: list[str] = FILES,
        output: Path = typer.Option(..., "--output", "-o", help="The signature file to write."),
        stats_file: str = STATS,
        **given: Any,
    ) -> None:
        """Staged dedup, stage 1 (one task per part): exact keys and LSH band keys."""
        params = options.build(DedupOptions, given).params()
        reading = options.build(RecordOptions, given)
        with os_errors():
            signatures_command(files or ["-"], output, params, reading, stats_file)

    signature_files = options.optional(
        "--signatures",
        "-s",
        help="Every part's signature file, in the parts' order (repeatable; or as arguments).",
    )

    @corpus_app.command("dedup-buckets")
    def buckets_verb(
        files: list[Path] = typer.Argument(
            None, help="Every part's signature file, in the parts' order.", show_default=False
        ),
        signatures: list[Path] = signature_files,
        output: Path = typer.Option(..., "--output", "-o", help="The edge file to write."),
        bucket: int = typer.Option(0, "--bucket", help="This task's bucket, 0 to --buckets - 1."),
        buckets: int = typer.Option(1, "--buckets", help="How many bucket tasks there are."),
    ) -> None:
        """Staged dedup, stage 2 (one task per bucket): edges between documents that share
        a key whose hash falls in this bucket."""
        with os_errors():
            buckets_command([*(signatures or []), *(files or [])], output, bucket, buckets)

    @corpus_app.command("dedup-clusters")
    @options.with_fields(DedupOptions, {"keep": "output"}, only=("keep",))
    def clusters_verb(
        files: list[Path] = typer.Argument(
            ...,
            help="Every bucket's edge file, and the parts' signature files (in the parts' "
            "order) unless given with -s; the kind of each file is read from its header.",
        ),
        signatures: list[Path] = signature_files,
        output: Path = typer.Option(..., "--output", "-o", help="The cluster file to write."),
        **given: Any,
    ) -> None:
        """Staged dedup, stage 3 (one task): clusters of all edges and the document each keeps."""
        keep = options.build(DedupOptions, given).keep
        with os_errors():
            clusters_command(files, signatures or [], output, keep)

    @corpus_app.command("dedup-filter")
    @options.with_fields(RecordOptions, {"removed_report": "part", "strict": "stats_file"})
    def apply_verb(
        files: list[str] = FILES,
        clusters_file: Path = typer.Option(
            ..., "--clusters-file", "-c", help="The file of dedup-clusters."
        ),
        part: int = typer.Option(
            ..., "--part", help="This part's number in the --signatures order of the stages."
        ),
        stats_file: str = STATS,
        **given: Any,
    ) -> None:
        """Staged dedup, stage 4 (one task per part): this part's kept documents to stdout."""
        reading = options.build(RecordOptions, given)
        with os_errors():
            apply_command(files or ["-"], clusters_file, part, reading, stats_file)
