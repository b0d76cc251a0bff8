"""``gpt2 pack``: token streams → zstd shards + manifest; also --verify and --merge."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from gpt2cli import console, jsonio
from gpt2cli.commands import options
from gpt2cli.data import manifest
from gpt2cli.data.pack import PackOptions
from gpt2cli.data.pack import pack as pack_streams
from gpt2cli.data.verify import verify as verify_directory
from gpt2cli.errors import UsageError

NAME = "pack"


def _pack(inputs: list[str], output: Path, options: PackOptions) -> None:
    timer = console.Stopwatch()
    with console.progress() as bar:
        result = pack_streams(inputs, output, options, progress=bar)
    seconds = timer.seconds
    parts = []
    for split in manifest.SPLITS:
        count, tokens, documents = result.split_totals(split)
        if count:
            parts.append(
                f"{split} {tokens:,} tokens / {documents:,} documents in {count} "
                f"shard{'s' if count != 1 else ''}"
            )
    summary = (
        f"gpt2 pack: {result.documents:,} documents, {result.tokens:,} tokens → "
        + ("; ".join(parts) if parts else "no shards (empty input: zero documents)")
        + f"; {output} (part {result.part!r}) in {seconds:.1f} s "
        f"({result.input_bytes / 1e6 / seconds:,.1f} MB/s)"
    )
    console.info(summary)
    for warning in result.warnings:
        console.warn(NAME, warning)


def _verify(directory: Path, as_json: bool) -> None:
    with console.progress() as bar:
        report = verify_directory(directory, progress=bar)
    if as_json:
        print(jsonio.dumps(report.to_dict(), indent=2))
    else:
        table = Table(title=f"{directory}", title_justify="left")
        for column in ("split", "shards", "tokens", "documents", "MB", "compression", "status"):
            table.add_column(column, justify="left" if column in ("split", "status") else "right")
        for split, row in report.splits().items():
            table.add_row(
                split,
                f"{row['shards']:,}",
                f"{row['tokens']:,}",
                f"{row['documents']:,}",
                f"{row['bytes'] / 1e6:,.1f}",
                f"{row['compression']:.2f}x",
                "ok" if not row["bad"] else f"{row['bad']} damaged",
            )
        totals = report.totals()
        table.add_row(
            "total",
            f"{totals['shards']:,}",
            f"{totals['tokens']:,}",
            f"{totals['documents']:,}",
            f"{totals['bytes'] / 1e6:,.1f}",
            f"{totals['compression']:.2f}x",
            "ok" if report.ok else "damaged",
            style="bold",
        )
        console.stderr_console().print(table)
    for name in report.unlisted:
        console.warn(
            NAME,
            f"{name} is not in the manifest (left by a killed pack? a rerun of its part, "
            "the same --name, removes it)",
        )
    report.raise_if_damaged()
    console.info(f"gpt2 pack --verify: {directory}: {len(report.shards)} shards ok")


def _merge(directory: Path, as_json: bool) -> None:
    result = manifest.merge(directory)
    if as_json:
        print(jsonio.dumps(result.to_dict()))
    console.info(
        f"gpt2 pack --merge: {directory}/{manifest.MANIFEST} lists {len(result.shards)} "
        f"shards ({result.tokens:,} tokens) from {len(result.parts)} parts: "
        + ", ".join(result.parts)
    )


def _from_llmc(files: list[str], output: Path, options: PackOptions, split: str | None) -> None:
    from gpt2cli.data import llmc

    with console.progress() as bar:
        result = llmc.pack_files(files, output, options, split, progress=bar)
    for warning in result.warnings:
        console.warn(NAME, warning)
    parts = [
        f"{s} {result.split_totals(s)[1]:,} tokens / {result.split_totals(s)[2]:,} documents"
        for s in manifest.SPLITS
        if result.split_totals(s)[0]
    ]
    console.info(
        f"gpt2 pack --from-llmc: {len(files)} llm.c file{'s' if len(files) != 1 else ''} → "
        + "; ".join(parts)
        + f"; {output} (part {result.part!r})"
    )


def _to_llmc(source: Path, output: Path, split: str | None, shard_tokens: int, name: str) -> None:
    from gpt2cli.data import llmc

    written = llmc.export(source, output, [split] if split else None, shard_tokens, name)
    for item in written:
        print(item.path)
    total = sum(item.tokens for item in written)
    console.info(
        f"gpt2 pack --to-llmc: {source} → {len(written)} llm.c files in {output} ({total:,} tokens)"
    )


def register(app: typer.Typer) -> None:
    @app.command(NAME)
    @options.with_fields(PackOptions, {"shard_tokens": "output"})
    def pack(
        streams: list[str] = typer.Argument(
            None,
            help="Token streams from `gpt2 tokenize`; '-' or none reads stdin.",
            show_default=False,
        ),
        output: Path = options.optional(
            "--output",
            "-o",
            help="Directory to write shards and manifest into (created; must be empty "
            "unless --append).",
        ),
        merge: Path = options.optional(
            "--merge",
            metavar="DIR",
            help="Only rebuild DIR/manifest.yaml from every part manifest in DIR.",
        ),
        verify: Path = options.optional(
            "--verify",
            metavar="DIR",
            help="Only re-read every shard of DIR: checksums, counts, ids; print a table.",
        ),
        as_json: bool = options.switch(
            "--json", help="With --verify or --merge: a JSON report on stdout."
        ),
        from_llmc: bool = options.switch(
            "--from-llmc",
            help="The inputs are llm.c / modded-nanogpt .bin token files (header checked): "
            "*_val_* files go to the val split, the others to train, each split's files in "
            "the order given as one stream.",
        ),
        to_llmc: Path = options.optional(
            "--to-llmc",
            metavar="DIR",
            help="Only write pack DIR's splits as llm.c .bin token files into -o OUT "
            "(NAME_val_000000.bin first, then NAME_train_..., --shard-tokens ids each); "
            "their paths go to stdout.",
        ),
        split: str = options.optional(
            "--split",
            help="With --from-llmc: put every file in this split (train or val); with "
            "--to-llmc: write only this split.",
        ),
        **given: Any,
    ) -> None:
        """Pack token streams into zstd shards with a YAML manifest, split into train and
        val by whole documents. Shards appear only when complete and the manifest last,
        so an interrupted pack never leaves a listed shard half-written. `--verify DIR`
        checks a pack; `--merge DIR` joins the parts of parallel `--append --name` runs;
        `--from-llmc FILE...` packs llm.c .bin token files and `--to-llmc DIR -o OUT` writes them.
        Example: gpt2 tokenize corpus.jsonl | gpt2 pack -o shards/ --val-tokens 1000000"""
        packing = options.build(PackOptions, given)
        if to_llmc is not None:
            if verify is not None or merge is not None or from_llmc or streams:
                raise UsageError("--to-llmc DIR takes only -o OUT (and --split, --shard-tokens)")
            if output is None:
                raise UsageError("missing -o OUT", "gpt2 pack --to-llmc DIR -o OUT")
            _to_llmc(to_llmc, output, split, packing.shard_tokens, packing.name)
            return
        if split is not None and not from_llmc:
            raise UsageError("--split goes with --from-llmc or --to-llmc")
        if verify is not None or merge is not None:
            if verify is not None and merge is not None:
                raise UsageError("--verify and --merge do not go together")
            if streams or output is not None:
                raise UsageError("--verify and --merge take only a directory")
            if verify is not None:
                _verify(verify, as_json)
            else:
                _merge(merge, as_json)
            return
        if output is None:
            raise UsageError("missing -o DIR", "gpt2 pack -o DIR [STREAM...]")
        if as_json:
            raise UsageError("--json goes with --verify or --merge")
        if from_llmc:
            if packing.val_tokens or packing.val_fraction or packing.shuffle_buffer:
                raise UsageError(
                    "--from-llmc keeps llm.c's split and order",
                    "drop --val-tokens, --val-fraction and --shuffle-buffer",
                )
            if not streams:
                raise UsageError(
                    "--from-llmc needs FILE names", "gpt2 pack --from-llmc -o DIR FILE..."
                )
            _from_llmc(streams, output, packing, split)
            return
        _pack(streams or ["-"], output, packing)
