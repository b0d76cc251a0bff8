"""Benchmark `gpt2 tokenize` and `gpt2 tokenize | gpt2 pack` against raw tiktoken.

    python bench/bench_tokenize.py [--threads N] [--large-mb 256] [--skip-large]

Corpus: the standard library's .py files (about 34 MB), as text documents separated
by <|endoftext|> lines. The reference is `tiktoken.Encoding.encode_ordinary_batch` with
the same number of threads on the same documents, already in memory, measured in
the same run. Each command runs as a real subprocess, so its wall time includes
Python's start-up and imports; the "in-command" figures use the throughput the
command itself reports (from its first to its last byte).

Then peak RSS (from wait4) of `gpt2 tokenize` and of `gpt2 pack` on a large input
(the corpus repeated to --large-mb megabytes).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

from gpt2cli.text.parallel_encoder import default_threads
from gpt2cli.text.tokenizer import EOT_TEXT

GPT2 = [sys.executable, "-m", "gpt2cli"]
REFERENCE = """
import sys, time
from gpt2cli.text.tokenizer import EOT_TEXT, get_encoding
texts = open(sys.argv[1], encoding="utf-8").read().split(f"\\n{EOT_TEXT}\\n")
encoding = get_encoding()
best = float("inf")
for _ in range(int(sys.argv[3])):
    start = time.perf_counter()
    ids = encoding.encode_ordinary_batch(texts, num_threads=int(sys.argv[2]))
    best = min(best, time.perf_counter() - start)
print(best, sum(len(x) for x in ids))
"""


def stdlib_documents() -> list[str]:
    root = Path(sysconfig.get_paths()["stdlib"])
    texts = []
    for path in sorted(root.rglob("*.py")):
        if "site-packages" in path.parts or "dist-packages" in path.parts:
            continue
        try:
            texts.append(path.read_text("utf-8"))
        except (UnicodeDecodeError, OSError):
            continue
    return [text for text in texts if EOT_TEXT not in text.splitlines()]


def wait_rss(process: subprocess.Popen) -> tuple[int, float]:
    """Exit status and peak RSS (MB) of a child, via wait4."""
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return process.returncode, usage.ru_maxrss / 1024


def peak_rss_run(command: list[str], source: Path, sink: Path | None = None) -> tuple[float, float]:
    """Run ``command`` with ``source`` on stdin (and stdout to ``sink``): (peak RSS MB, seconds);
    exits with the child's stderr when it fails."""
    with open(source, "rb") as stdin, open(sink or os.devnull, "wb") as stdout:
        start = time.perf_counter()
        child = subprocess.Popen(command, stdin=stdin, stdout=stdout, stderr=subprocess.PIPE)
        code, rss = wait_rss(child)
        wall = time.perf_counter() - start
    if code:
        sys.exit(child.stderr.read().decode() if child.stderr else f"{command[-1]} failed")
    return rss, wall


def reported_mb_s(stderr: str) -> float:
    match = re.search(r"\(([\d,.]+) MB/s\)", stderr)
    return float(match.group(1).replace(",", "")) if match else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--threads", type=int, default=default_threads())
    parser.add_argument(
        "--large-mb",
        type=int,
        default=256,
        help="size of the large input for the memory test (issue: 2048)",
    )
    parser.add_argument("--skip-large", action="store_true")
    parser.add_argument("--repeat", type=int, default=3, help="best of N rounds")
    args = parser.parse_args()
    threads = args.threads
    work = Path(tempfile.mkdtemp(prefix="gpt2-bench-"))
    try:
        texts = stdlib_documents()
        corpus = work / "corpus.txt"
        corpus.write_text(f"\n{EOT_TEXT}\n".join(texts), encoding="utf-8")
        size = corpus.stat().st_size
        print(
            f"corpus: {len(texts):,} stdlib .py files, {size / 1e6:.1f} MB; "
            f"threads {threads}; cpus {os.cpu_count()}"
        )

        # The reference runs in a child too, so that this process stays small and the
        # children's peak RSS (wait4 counts the parent's size at fork) means something.
        # Rounds interleave reference and commands, best of each, against a busy machine.
        best = {
            "ref": float("inf"),
            "startup": float("inf"),
            "tokenize": float("inf"),
            "pipe": float("inf"),
        }
        best_in = 0.0
        tokens = 0
        for _ in range(args.repeat):
            result = subprocess.run(
                [sys.executable, "-c", REFERENCE, str(corpus), str(threads), "1"],
                check=True,
                capture_output=True,
                text=True,
            )
            best["ref"] = min(best["ref"], float(result.stdout.split()[0]))
            tokens = int(result.stdout.split()[1])

            start = time.perf_counter()
            subprocess.run([*GPT2, "--version"], check=True, capture_output=True)
            best["startup"] = min(best["startup"], time.perf_counter() - start)

            start = time.perf_counter()
            result = subprocess.run(
                [
                    *GPT2,
                    "tokenize",
                    "--threads",
                    str(threads),
                    "--format",
                    "text",
                    str(corpus),
                    "-o",
                    str(work / "corpus.tok"),
                ],
                capture_output=True,
                text=True,
            )
            if result.returncode:
                sys.exit(result.stderr)
            best["tokenize"] = min(best["tokenize"], time.perf_counter() - start)
            best_in = max(best_in, reported_mb_s(result.stderr))

            out = work / "packed"
            shutil.rmtree(out, ignore_errors=True)
            start = time.perf_counter()
            result = subprocess.run(
                f"set -o pipefail; cat {corpus} | {' '.join(GPT2)} tokenize --threads {threads} "
                f"--format text | {' '.join(GPT2)} pack -o {out} --val-tokens 1000000",
                shell=True,
                capture_output=True,
                text=True,
                executable="/bin/bash",
            )
            if result.returncode:
                sys.exit(result.stderr)
            best["pipe"] = min(best["pipe"], time.perf_counter() - start)

        ref, startup = best["ref"], best["startup"]
        ref_mb_s = size / 1e6 / ref
        print(
            f"tiktoken encode_ordinary_batch: {ref:.2f} s, {ref_mb_s:.1f} MB/s, "
            f"{tokens / ref / 1e6:.2f} M tokens/s ({tokens:,} tokens)"
        )
        print(f"gpt2 start-up (gpt2 --version): {startup:.2f} s")
        wall = best["tokenize"]
        print(
            f"gpt2 tokenize: wall {wall:.2f} s ({size / 1e6 / wall:.1f} MB/s) "
            f"ratio {ref / wall:.2f}x; without start-up {ref / max(wall - startup, 1e-9):.2f}x; "
            f"in-command {best_in:.1f} MB/s ratio {best_in / ref_mb_s:.2f}x"
        )
        pipe = best["pipe"]
        print(
            f"cat | gpt2 tokenize | gpt2 pack: wall {pipe:.2f} s "
            f"({size / 1e6 / pipe:.1f} MB/s) ratio {ref / pipe:.2f}x; "
            f"without one start-up {ref / max(pipe - startup, 1e-9):.2f}x"
        )
        print(
            f"(best of {args.repeat} interleaved rounds; load average "
            f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} cpus)"
        )

        if not args.skip_large:
            large = work / "large.txt"
            with open(large, "wb") as handle:
                chunk = corpus.read_bytes() + f"\n{EOT_TEXT}\n".encode()
                while handle.tell() < args.large_mb * 1e6:
                    handle.write(chunk)
            large_size = large.stat().st_size
            stream = work / "large.tok"
            rss, wall = peak_rss_run(
                [*GPT2, "tokenize", "--threads", str(threads), "--format", "text"], large, stream
            )
            print(
                f"large input {large_size / 1e6:,.0f} MB: gpt2 tokenize peak RSS {rss:,.0f} MB "
                f"({wall:.0f} s)"
            )
            out = work / "large-pack"
            rss, wall = peak_rss_run(
                [*GPT2, "pack", "-o", str(out), "--val-tokens", "1000000"], stream
            )
            print(
                f"large input {stream.stat().st_size / 1e6:,.0f} MB of tokens: gpt2 pack peak "
                f"RSS {rss:,.0f} MB ({wall:.0f} s)"
            )
            base = subprocess.Popen([*GPT2, "--version"], stdout=subprocess.DEVNULL)
            print(f"(for scale: `gpt2 --version` alone peaks at {wait_rss(base)[1]:,.0f} MB)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
