"""Benchmark the TokenLoader: random (x, y) windows per second on one core.

    python bench/bench_loader.py [--tokens 50000000] [--stream FILE.tok] [--seconds 5]

Packs a corpus (a real token stream given with --stream, else synthetic Zipf-distributed
ids in documents of random length) with the default shard settings, then times
`next(loader)` (int64 torch tensors, as `train` takes them) for random windows:

* small split: one permutation of all windows, blocks served from the warm
  decompressed-block cache (the steady state of any split up to 64 M tokens);
* large split: the chunked order that splits over 64 M tokens get (forced here on the
  smaller corpus), starting with a cold cache: blocks are decompressed as they come;
* no locality: one permutation of all windows with a 4 MB cache, so nearly every
  window decompresses its blocks (what a large split would cost without chunking).

The reference, measured in the same run, reads the same windows from an uncompressed
uint16 file through numpy.memmap (the llm.c / nanoGPT way) into the same tensors.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from gpt2cli.data import loader as loader_module
from gpt2cli.data.dataset import ShardDataset
from gpt2cli.data.loader import TokenLoader
from gpt2cli.data.pack import PackOptions, pack
from gpt2cli.text import token_stream
from gpt2cli.text.tokenizer import EOT


def synthetic_stream(path: Path, tokens: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    with open(path, "wb") as handle:
        handle.write(token_stream.HEADER)
        written = 0
        while written < tokens:
            ids = (rng.zipf(1.2, size=1 << 20) - 1) % EOT
            lengths = rng.integers(50, 3000, size=2000)
            ends = np.cumsum(lengths)
            ends = ends[ends < ids.size]
            ids[ends] = EOT
            ids = ids[: int(ends[-1]) + 1].astype("<u2")
            handle.write(ids.tobytes())
            written += ids.size


def time_batches(next_batch, batch_tokens: int, seconds: float) -> float:
    """Tokens per second of this process's CPU time (on a shared machine, wall-clock rates
    mostly measure the neighbours; the loop is single-threaded, so CPU time is one core's)."""
    for _ in range(3):
        next_batch()
    count = 0
    start, cpu = time.perf_counter(), time.process_time()
    while time.perf_counter() - start < seconds:
        for _ in range(10):
            next_batch()
        count += 10
    return count * batch_tokens / (time.process_time() - cpu)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=30_000_000)
    parser.add_argument("--stream", type=Path, help="a token stream from gpt2 tokenize")
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()

    import torch

    torch.set_num_threads(1)
    work = Path(tempfile.mkdtemp(prefix="gpt2-bench-loader-"))
    try:
        stream = args.stream
        if stream is None:
            stream = work / "synthetic.tok"
            synthetic_stream(stream, args.tokens)
        start = time.perf_counter()
        result = pack([str(stream)], work / "packed", PackOptions())
        pack_seconds = time.perf_counter() - start
        size = sum(info.bytes for info in result.shards)
        print(
            f"corpus: {result.tokens:,} tokens, {result.documents:,} documents "
            f"({'synthetic Zipf' if args.stream is None else args.stream}); packed in "
            f"{pack_seconds:.1f} s, {size / 1e6:.1f} MB ({2 * result.tokens / size:.2f}x)"
        )

        dataset = ShardDataset(work / "packed")
        flat = work / "flat.u16"
        with open(flat, "wb") as handle:
            for block in dataset.iter_tokens("train"):
                handle.write(block.tobytes())
        memmap = np.memmap(flat, dtype=np.uint16, mode="r")

        for seq_len, batch in ((1024, 8), (256, 32)):
            batch_tokens = batch * (seq_len + 1)
            loader = TokenLoader(work / "packed", "train", seq_len, batch, seed=1)

            def memmap_batch(loader: TokenLoader = loader, t: int = seq_len) -> tuple:
                windows = loader.window_indices(0, loader.step % loader.batches_per_epoch)
                loader.step += 1
                out = np.empty((len(windows), t + 1), dtype=np.int64)
                for row, window in enumerate(windows.tolist()):
                    out[row] = memmap[window * t : window * t + t + 1]
                tensor = torch.from_numpy(out)
                return tensor[:, :-1].contiguous(), tensor[:, 1:].contiguous()

            reference = time_batches(memmap_batch, batch_tokens, args.seconds)
            loader.step = 0
            # Warm the cache with one pass over the split, as a first epoch would.
            for start in range(0, dataset.num_tokens("train") - 1, 1 << 16):
                loader.dataset.read("train", start, 1)
            cached = time_batches(lambda loader=loader: next(loader), batch_tokens, args.seconds)
            saved = loader_module.GLOBAL_SHUFFLE_TOKENS
            loader_module.GLOBAL_SHUFFLE_TOKENS = 0
            try:
                large = TokenLoader(work / "packed", "train", seq_len, batch, seed=1)
                chunked = time_batches(lambda large=large: next(large), batch_tokens, args.seconds)
            finally:
                loader_module.GLOBAL_SHUFFLE_TOKENS = saved
            cold = TokenLoader(
                work / "packed", "train", seq_len, batch, seed=1, cache_bytes=4 << 20
            )
            uncached = time_batches(lambda cold=cold: next(cold), batch_tokens, args.seconds)
            print(
                f"T={seq_len} B={batch}: numpy.memmap reference {reference / 1e6:.1f} M tok/s; "
                f"loader: small split {cached / 1e6:.1f} M tok/s ({cached / reference:.2f}x), "
                f"large split {chunked / 1e6:.1f} M tok/s ({chunked / reference:.2f}x), "
                f"no locality {uncached / 1e6:.1f} M tok/s ({uncached / reference:.2f}x)"
            )
        print(
            f"(M tokens per CPU-second of one core; torch threads 1; {os.cpu_count()} cpus, "
            f"load average {os.getloadavg()[0]:.1f})"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
