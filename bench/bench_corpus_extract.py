"""`gpt2 corpus extract` against trafilatura called directly on the same records.

    python bench/bench_corpus_extract.py [--pages 400] [--html-dir DIR] [--processes 1 2]

Writes a gzip'd WARC of HTML pages (synthetic news-like articles with navigation, sidebar,
comments and footer; or the ``*.html`` files under --html-dir, e.g. a documentation tree),
then times, in this process on one core (CPU time, in pairs that alternate which runs first):

- reference: ``trafilatura.extract(html, url=..., favor_precision=True,
  include_comments=False)`` on the pages already decoded in memory;
- ours: the whole of ``extract`` -- reading and decompressing the WARC, HTTP parsing,
  charset decoding, the same trafilatura call, the title, JSON Lines out.

Prints pages/s of both, the ratio of the best times and the median of the pairs' ratios
(goal >= 0.9), then the CLI's wall time with
--processes N for each N given (scaling; includes interpreter start-up and, for N > 1, the
worker processes' start-up).
"""

from __future__ import annotations

import argparse
import io
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from gpt2cli.corpus.extract import ExtractOptions, decode_html, extract_pages
from gpt2cli.corpus.jsonl import dumps
from gpt2cli.corpus.stats import StageStats
from gpt2cli.corpus.warc import iter_responses

WORDS = (
    "the of and to in a is that for it as was with be by on not he this are or his from at "
    "which but have an they you were her she there been one all we their has would when if "
    "river council market season report school water engine story people government city "
    "year week court music film team player company price energy health family history"
).split()


def sentence(rng: random.Random) -> str:
    words = [rng.choice(WORDS) for _ in range(rng.randint(8, 24))]
    return " ".join(words).capitalize() + "."


def synthetic_page(rng: random.Random, index: int) -> str:
    paragraphs = "".join(
        f"<p>{' '.join(sentence(rng) for _ in range(rng.randint(2, 6)))}</p>\n"
        for _ in range(rng.randint(4, 14))
    )
    links = "".join(f"<li><a href='/s/{i}'>{sentence(rng)[:30]}</a></li>" for i in range(12))
    comments = "".join(
        f"<div class='comment'><b>user{i}</b><p>{sentence(rng)}</p></div>" for i in range(5)
    )
    return (
        f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>Story {index}</title>"
        f"<script>var x = {index};</script><style>p{{margin:0}}</style></head><body>"
        f"<header><nav><ul>{links}</ul></nav></header><main><article><h1>Story {index}</h1>"
        f"<p class='byline'>By Staff, 2019-01-0{index % 9 + 1}</p>{paragraphs}</article>"
        f"<aside><h3>Related</h3><ul>{links}</ul></aside>"
        f"<section id='comments'>{comments}</section></main>"
        f"<footer><p>Copyright 2019 Example Media.</p><ul>{links}</ul></footer></body></html>"
    )


def load_pages(args: argparse.Namespace) -> list[tuple[str, bytes]]:
    if args.html_dir:
        files = sorted(Path(args.html_dir).rglob("*.html"))[: args.pages]
        return [(f"https://docs.example.com/{i}", f.read_bytes()) for i, f in enumerate(files)]
    rng = random.Random(0)
    return [
        (f"https://news.example.com/{i}", synthetic_page(rng, i).encode())
        for i in range(args.pages)
    ]


def write_warc(path: Path, pages: list[tuple[str, bytes]]) -> None:
    from fastwarc.stream_io import GzipWriter
    from fastwarc.warc import WarcRecord, WarcRecordType

    writer = GzipWriter(str(path))
    for url, body in pages:
        http = b"HTTP/1.1 200 OK\r\nContent-Type: text/html; charset=utf-8\r\n"
        http += f"Content-Length: {len(body)}\r\n\r\n".encode() + body
        record = WarcRecord()
        record.init_headers(WarcRecordType.response, uuid.uuid4().urn[4:].encode())
        record.headers["WARC-Target-URI"] = url
        record.headers["WARC-Date"] = "2019-02-01T00:00:00Z"
        record.headers["Content-Type"] = "application/http; msgtype=response"
        record.set_bytes_content(http)
        record.write(writer)
    writer.close()


def cpu_seconds_of(work) -> float:
    """CPU time of this process: a co-tenant's load slows the clock less than the wall."""
    start = time.process_time()
    work()
    return time.process_time() - start


def paired_times(reference, ours, repeats: int) -> tuple[list[float], list[float]]:
    """Runs the two in pairs, alternating which goes first; returns the times of each."""
    reference_s, ours_s = [], []
    for repeat in range(repeats):
        pair = [(reference, reference_s), (ours, ours_s)]
        for work, times in pair if repeat % 2 == 0 else pair[::-1]:
            times.append(cpu_seconds_of(work))
    return reference_s, ours_s


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=400)
    parser.add_argument("--html-dir", default=None)
    parser.add_argument("--processes", type=int, nargs="*", default=[1, 2])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    os.environ.setdefault("OMP_NUM_THREADS", "1")

    import trafilatura

    from gpt2cli.corpus.extract import _quiet_logging

    _quiet_logging()
    pages = load_pages(args)
    with tempfile.TemporaryDirectory() as tmp:
        crawl = Path(tmp) / "crawl.warc.gz"
        write_warc(crawl, pages)
        size = sum(len(body) for _, body in pages)
        warc_mb = crawl.stat().st_size / 1e6
        print(f"{len(pages)} pages, {size / 1e6:.1f} MB of HTML, WARC {warc_mb:.1f} MB")
        decoded = [(url, decode_html(body, "utf-8")) for url, body in pages]
        options = ExtractOptions()
        kwargs = options.trafilatura_kwargs()

        def reference() -> None:
            for url, html in decoded:
                trafilatura.extract(html, url=url, **kwargs)

        def ours() -> None:
            stats = StageStats("extract")
            sink = io.BytesIO()
            items = iter_responses([str(crawl)], stats, 5_000_000)
            for record in extract_pages(items, options, stats, None, processes=1):
                sink.write(dumps(record))

        ours()  # warm-up: imports and trafilatura's caches, for both
        reference_s, ours_s = paired_times(reference, ours, args.repeats)
        ratios = sorted(r / o for r, o in zip(reference_s, ours_s))
        print(f"trafilatura.extract directly: {len(pages) / min(reference_s):8.1f} pages/s (best)")
        print(f"gpt2 corpus extract (core):   {len(pages) / min(ours_s):8.1f} pages/s (best)")
        print(
            f"ratio ours/trafilatura, CPU time: best {min(reference_s) / min(ours_s):.3f}, "
            f"median of {len(ratios)} pairs {statistics.median(ratios):.3f} "
            f"(range {ratios[0]:.3f}-{ratios[-1]:.3f}; goal >= 0.9)"
        )
        env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
        for processes in args.processes:
            start = time.perf_counter()
            subprocess.run(
                [sys.executable, "-m", "gpt2cli", "corpus", "extract", "-j", str(processes),
                 str(crawl), "-o", str(Path(tmp) / "out.jsonl")],
                check=True, env=env, stderr=subprocess.DEVNULL,
            )  # fmt: skip
            seconds = time.perf_counter() - start
            rate = len(pages) / seconds
            print(f"CLI --processes {processes}: {seconds:6.2f} s, {rate:7.1f} pages/s")


if __name__ == "__main__":
    main()
