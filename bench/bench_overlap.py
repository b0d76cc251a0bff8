"""Throughput and peak memory of `gpt2 overlap` build / check, per core.

    python bench/bench_overlap.py [--mb 16] [--fp-rate 1e-8]

Writes a synthetic English-like corpus (Zipf-distributed words with punctuation,
JSON Lines), then runs each phase in its own single-threaded child process and
reports MB of text per second and the child's peak RSS:

* reference: reading the documents only (readers.iter_pieces), and a naive
  per-n-gram ``hashlib.blake2b`` loop on a sample, measured in the same run;
* count: the HyperLogLog counting pass that sizes a filter when --capacity is absent;
* build: adding every 8-gram (capacity given, one pass);
* check: a test set (5% of its documents copied from the training text) against the filter;
* the same build and check with ``--hashes 14`` (fewer bits per n-gram, a larger filter).

MB/s is wall-clock; MB/cpu-s divides by the phase's CPU time, which is the
per-core figure that holds on a shared machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CHILD = r"""
import json, sys, time, hashlib
from pathlib import Path
from gpt2cli.overlap import build, check, ngrams
from gpt2cli.overlap.filter_file import BloomFilter
from gpt2cli.overlap.normalise import words
from gpt2cli.text import readers
phase, corpus, filter_path, capacity, fp_rate, hashes = sys.argv[1:7]
start = time.perf_counter()
cpu_start = time.process_time()
result = {}
if phase == "read":
    nbytes = sum(len(p.text.encode()) for p in readers.iter_pieces([corpus]))
elif phase == "naive":
    nbytes = 0
    budget = 2_000_000
    for p in readers.iter_pieces([corpus]):
        w = words(p.text)
        for i in range(len(w) - 7):
            hashlib.blake2b(" ".join(w[i:i + 8]).encode(), digest_size=16).digest()
        nbytes += len(p.text.encode())
        if nbytes > budget:
            break
elif phase == "count":
    estimate, _, nbytes = build.estimate_distinct(readers.iter_pieces([corpus]), 8)
    result["estimate"] = estimate
elif phase.startswith("build"):
    r = build.build_filter(lambda: readers.iter_pieces([corpus]), Path(filter_path), 8,
                             float(fp_rate), int(capacity), hashes=int(hashes) or None)
    nbytes = r.nbytes
    result.update(k=r.header.k, filter_bytes=r.header.file_size, items=r.header.items)
elif phase == "check":
    f = BloomFilter.open(filter_path)
    batcher = ngrams.NgramBatcher(f.header.n)
    nbytes = total = found = 0
    for batch, _ in check.check_batches(f, batcher.batches(readers.iter_pieces([corpus]))):
        nbytes += batch.nbytes
    result["estimated_fp_rate"] = f.estimated_fp_rate
seconds = time.perf_counter() - start
result.update(phase=phase, bytes=nbytes, seconds=seconds, cpu=time.process_time() - cpu_start)
print(json.dumps(result))
"""


def make_corpus(
    path: Path,
    megabytes: float,
    seed: int,
    copy_from: list[str] | None = None,
    copy_share: float = 0.0,
) -> list[str]:
    rng = np.random.default_rng(seed)
    letters = np.array(list("etaoinshrdlcumwfgypbvkjxqz"))
    weights = 1.0 / np.arange(1, 27) ** 0.9
    weights /= weights.sum()
    vocabulary = [
        "".join(rng.choice(letters, size=rng.integers(1, 11), p=weights)) for _ in range(50_000)
    ]
    zipf = 1.0 / np.arange(1, len(vocabulary) + 1) ** 1.1
    zipf /= zipf.sum()
    punctuation = np.array([" ", " ", " ", " ", " ", " ", ", ", ". ", "\n", "; ", " (", ") "])
    texts: list[str] = []
    size = 0
    with open(path, "w", encoding="utf-8") as out:
        while size < megabytes * 1e6:
            if copy_from and rng.random() < copy_share:
                text = copy_from[int(rng.integers(0, len(copy_from)))]
            else:
                count = int(rng.integers(100, 1500))
                words = rng.choice(len(vocabulary), size=count, p=zipf)
                marks = rng.choice(punctuation, size=count)
                text = "".join(
                    vocabulary[w].capitalize() if m == ". " else vocabulary[w] + m
                    for w, m in zip(words, marks)
                )
            texts.append(text)
            size += len(text)
            out.write(json.dumps({"text": text}) + "\n")
    return texts


def run_phase(
    phase: str, corpus: Path, filter_path: Path, capacity: int, fp_rate: float, hashes: int = 0
) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            CHILD,
            phase,
            str(corpus),
            str(filter_path),
            str(capacity),
            str(fp_rate),
            str(hashes),
        ],
        stdout=subprocess.PIPE,
        env=env,
    )
    output = process.stdout.read()
    _, status, usage = os.wait4(process.pid, 0)
    process.stdout.close()
    if status != 0:
        raise SystemExit(f"phase {phase} failed")
    result = json.loads(output)
    result["peak_rss_mb"] = usage.ru_maxrss / 1024  # kilobytes on Linux
    result["mb_per_s"] = result["bytes"] / 1e6 / result["seconds"]
    result["mb_per_cpu_s"] = result["bytes"] / 1e6 / max(result["cpu"], 1e-9)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--mb", type=float, default=16.0, help="training text size (MB)")
    parser.add_argument("--test-mb", type=float, default=4.0, help="test text size (MB)")
    parser.add_argument("--fp-rate", type=float, default=1e-8)
    parser.add_argument(
        "--hashes",
        type=int,
        default=14,
        help="k of the second, faster build (gpt2 overlap build --hashes)",
    )
    parser.add_argument(
        "--copy-share",
        type=float,
        default=0.05,
        help="share of test documents copied from the training text",
    )
    parser.add_argument(
        "--capacity",
        type=float,
        default=None,
        help="filter capacity (default: the n-grams in the corpus)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-overlap-") as tmp:
        directory = Path(tmp)
        train_path, test_path = directory / "train.jsonl", directory / "test.jsonl"
        started = time.perf_counter()
        train = make_corpus(train_path, args.mb, 1)
        make_corpus(test_path, args.test_mb, 2, copy_from=train, copy_share=args.copy_share)
        print(
            f"corpus: {args.mb:g} MB train, {args.test_mb:g} MB test "
            f"(generated in {time.perf_counter() - started:.0f} s); one core per phase",
            file=sys.stderr,
        )
        filter_path = directory / "train.bloom"
        results = {}
        results["read"] = run_phase("read", train_path, filter_path, 1, args.fp_rate)
        results["naive"] = run_phase("naive", train_path, filter_path, 1, args.fp_rate)
        results["count"] = run_phase("count", train_path, filter_path, 1, args.fp_rate)
        capacity = int(args.capacity or results["count"]["estimate"] * 1.05)
        results["build"] = run_phase("build", train_path, filter_path, capacity, args.fp_rate)
        results["check"] = run_phase("check", test_path, filter_path, capacity, args.fp_rate)
        fast = directory / "fast.bloom"
        results[f"build-k{args.hashes}"] = run_phase(
            "build", train_path, fast, capacity, args.fp_rate, args.hashes
        )
        results[f"check-k{args.hashes}"] = run_phase(
            "check", test_path, fast, capacity, args.fp_rate
        )
    build = results["build"]
    fast_build = results[f"build-k{args.hashes}"]
    print(
        f"filter: capacity {capacity:,}, fp-rate {args.fp_rate:g}: k={build['k']}, "
        f"{build['filter_bytes'] / 1e6:,.1f} MB; with --hashes {args.hashes}: "
        f"{fast_build['filter_bytes'] / 1e6:,.1f} MB"
    )
    reference = results["read"]["mb_per_cpu_s"]
    print(f"{'phase':<10} {'MB/s':>8} {'MB/cpu-s':>9} {'vs read':>8} {'peak RSS':>10}")
    for phase, result in results.items():
        print(
            f"{phase:<10} {result['mb_per_s']:>8.1f} {result['mb_per_cpu_s']:>9.1f} "
            f"{result['mb_per_cpu_s'] / reference:>7.2f}x {result['peak_rss_mb']:>7.0f} MB"
        )
    print(
        f"build: {results['build']['mb_per_cpu_s'] / results['naive']['mb_per_cpu_s']:.1f}x "
        "the naive blake2b-per-n-gram loop (hashing only, no filter)"
    )
    print(json.dumps({"capacity": capacity, "fp_rate": args.fp_rate, **results}))


if __name__ == "__main__":
    main()
