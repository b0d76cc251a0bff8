"""``gpt2 overlap verify``: every region of a filter's bit array against its checksum."""

from __future__ import annotations

import sys
from pathlib import Path

from gpt2cli import console, jsonio
from gpt2cli.console import human_bytes
from gpt2cli.errors import Gpt2Error
from gpt2cli.overlap.filter_file import REBUILD, BloomFilter


def verify_command(paths: list[Path], as_json: bool) -> None:
    damaged: list[str] = []
    for path in paths:
        timer = console.Stopwatch()
        try:
            bloom_filter = BloomFilter.open(path, verify=False)
        except Gpt2Error as error:  # unreadable or not a filter: say so, and verify the rest
            if as_json:
                print(jsonio.dumps({"path": str(path), "error": error.message, "ok": False}))
            if len(paths) == 1:
                raise
            console.warn("overlap verify", str(error))
            damaged.append(f"{path} ({error.message.removeprefix(f'{path}: ')})")
            continue
        header = bloom_filter.header
        bad = bloom_filter.corrupt_regions()
        if as_json:
            print(
                jsonio.dumps(
                    {
                        "path": str(path),
                        "format_version": header.format_version,
                        "regions": header.regions,
                        "region_bytes": header.region_bytes,
                        "corrupt_regions": bad,
                        "ok": bad == [],
                    }
                )
            )
        if bad is None:
            damaged.append(f"{path} (format version {header.format_version}: no checksums)")
        elif bad:
            damaged.append(f"{path} ({len(bad):,} of {header.regions:,} regions corrupt)")
            console.warn(
                "overlap verify",
                f"{path}: checksum mismatch in regions "
                + ", ".join(str(region) for region in bad[:20])
                + (" ..." if len(bad) > 20 else "")
                + f" ({human_bytes(header.region_bytes)} each)",
            )
        else:
            console.info(
                f"gpt2 overlap verify: {path}: ok, {header.regions:,} regions of "
                f"{human_bytes(header.region_bytes)} ({human_bytes(header.file_size)}) in "
                f"{timer.seconds:.1f} s"
            )
    sys.stdout.flush()
    if damaged:
        raise Gpt2Error(
            "cannot vouch for " + ", ".join(damaged),
            REBUILD,
        )
