"""`gpt2 corpus fetch` against `wget --warc-file -i` on the same list of loopback pages.

    python bench/bench_corpus_fetch.py [--pages 2000] [--hosts 200] [--latency 0.05]
                                       [--wget-pages N] [--clients]

A server process answers every request after --latency seconds (an aiohttp server on
127.0.0.2 ... 127.0.0.(hosts+1), one "host" each; 4 KB HTML pages, robots.txt 404). Then:

- ours: the core of `gpt2 corpus fetch` in this process, --per-host 1 --delay 0 (wget's
  default wait), robots.txt obeyed (one request more a host); wall time, pages/s, and this
  process's CPU time per page (the server runs in another process); --repeat runs, the
  median shown (a shared machine's load moves single runs by 2-3x);
- wget: `wget --warc-file -i LIST` (one URL after another, as it works), on the first
  --wget-pages of the list (default: all); pages/s;
- memory: peak RSS of `gpt2 corpus fetch` as a command for the list and for a list ten times
  as long (flat: bounded by --max-urls and the frontier's buffer, not by the input);
- --clients: the client choice -- bare GETs of the same pages with aiohttp and with httpx at
  the same concurrency, CPU per request of each.

Goal: >= 20x wget's pages/s at the same per-host pacing, <= 2 ms CPU a page.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SERVER = r"""
import asyncio, sys
from aiohttp import web
hosts, latency = int(sys.argv[1]), float(sys.argv[2])
body = ("<html><head><title>page</title></head><body>"
        + "<p>" + "words of a page " * 250 + "</p></body></html>").encode()

async def handle(request):
    await asyncio.sleep(latency)
    if request.path == "/robots.txt":
        return web.Response(status=404)
    return web.Response(body=body, content_type="text/html")

async def main():
    app = web.Application()
    app.router.add_get("/{tail:.*}", handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    for i in range(hosts):
        await web.TCPSite(runner, f"127.0.0.{i + 2}", 8000, backlog=1024).start()
    print("ready", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


def start_server(hosts: int, latency: float) -> subprocess.Popen:
    server = subprocess.Popen(
        [sys.executable, "-c", SERVER, str(hosts), str(latency)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None and server.stdout.readline().strip() == "ready"
    return server


def url_list(pages: int, hosts: int) -> list[str]:
    return [f"http://127.0.0.{i % hosts + 2}:8000/page/{i}" for i in range(pages)]


def ours(links: Path, out: Path) -> tuple[float, float, int]:
    from gpt2cli.corpus.fetch.run import FetchOptions, fetch
    from gpt2cli.corpus.stats import StageStats

    options = FetchOptions(
        [str(links)], out, per_host=1, delay=0.0, allow_private=True, concurrency=256
    )
    stats = StageStats("fetch")
    cpu, wall = time.process_time(), time.perf_counter()
    fetch(options, stats)
    return time.perf_counter() - wall, time.process_time() - cpu, stats.documents_out


def wget(urls: list[str], work: Path) -> float | None:
    if shutil.which("wget") is None:
        return None
    listing = work / "wget-list.txt"
    listing.write_text("\n".join(urls) + "\n")
    start = time.perf_counter()
    subprocess.run(
        ["wget", "-q", "-i", str(listing), "--warc-file", str(work / "wget"), "-P",
         str(work / "wget-files"), "--tries", "1", "--no-proxy"],
        check=False,
    )  # fmt: skip
    return time.perf_counter() - start


def peak_rss_mb(links: Path, out: Path) -> float:
    command = [sys.executable, "-m", "gpt2cli", "corpus", "fetch", str(links), "-o", str(out),
               "--allow-private", "--delay", "0", "--ignore-robots"]  # fmt: skip
    code = (
        "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
        "stderr=subprocess.DEVNULL); "
        "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)"
    )
    result = subprocess.run([sys.executable, "-c", code, *command], capture_output=True, text=True)
    return int(result.stdout.strip()) / 1024


async def client_cpu(kind: str, urls: list[str], concurrency: int) -> tuple[float, float, int]:
    """Wall and CPU seconds for bare GETs of ``urls`` with one client library, and how many
    GETs failed."""
    limit = asyncio.Semaphore(concurrency)
    failed = 0
    per_host: dict[str, asyncio.Semaphore] = {}
    cpu, wall = time.process_time(), time.perf_counter()
    if kind == "aiohttp":
        import aiohttp

        async with aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=concurrency, limit_per_host=1)
        ) as session:

            async def get(url: str) -> None:
                nonlocal failed
                try:
                    async with limit, session.get(url) as response:
                        await response.read()
                except aiohttp.ClientError:
                    failed += 1

            await asyncio.gather(*(get(url) for url in urls))
    else:
        import httpx

        limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
        async with httpx.AsyncClient(limits=limits, trust_env=False) as client:

            async def get(url: str) -> None:
                nonlocal failed
                host = url.split("/")[2]
                gate = per_host.setdefault(host, asyncio.Semaphore(1))
                async with limit, gate:
                    try:
                        response = await client.get(url)
                        response.read()
                    except httpx.HTTPError:
                        failed += 1

            await asyncio.gather(*(get(url) for url in urls))
    return time.perf_counter() - wall, time.process_time() - cpu, failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=2000)
    parser.add_argument("--hosts", type=int, default=200)
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--wget-pages", type=int, default=0, help="0: the whole list")
    parser.add_argument("--repeat", type=int, default=3, help="runs of ours (the median shown)")
    parser.add_argument("--clients", action="store_true")
    parser.add_argument("--no-memory", action="store_true")
    args = parser.parse_args()

    urls = url_list(args.pages, args.hosts)
    server = start_server(args.hosts, args.latency)
    work = Path(tempfile.mkdtemp(prefix="bench-fetch-"))
    results: dict[str, object] = {"pages": args.pages, "hosts": args.hosts,
                                  "latency_s": args.latency}  # fmt: skip
    try:
        links = work / "links.txt"
        links.write_text("\n".join(urls) + "\n")
        runs = []
        for number in range(args.repeat):
            wall, cpu, fetched = ours(links, work / f"ours-{number}")
            assert fetched == args.pages, f"fetched {fetched} of {args.pages}"
            runs.append((wall, cpu))
        print("ours, each run: " + ", ".join(f"{w:.2f} s" for w, _ in runs), flush=True)
        wall, cpu = sorted(runs)[len(runs) // 2]  # the median run
        results.update(ours_s=round(wall, 2), ours_pages_per_s=round(args.pages / wall, 1),
                       ours_cpu_ms_per_page=round(1000 * cpu / args.pages, 3))  # fmt: skip
        print(f"ours: {args.pages} pages in {wall:.2f} s = {args.pages / wall:,.0f} pages/s, "
              f"{1000 * cpu / args.pages:.2f} ms CPU a page", flush=True)  # fmt: skip
        subset = urls[: args.wget_pages or len(urls)]
        seconds = wget(subset, work)
        if seconds is None:
            print("wget: not installed (apt-get install -y wget)")
        else:
            rate = len(subset) / seconds
            results.update(wget_pages=len(subset), wget_pages_per_s=round(rate, 1),
                           ratio=round(args.pages / wall / rate, 1))  # fmt: skip
            ratio = args.pages / wall / rate
            print(f"wget: {len(subset)} pages in {seconds:.1f} s = {rate:,.1f} pages/s; "
                  f"ours / wget = {ratio:.1f}x (goal >= 20x)", flush=True)  # fmt: skip
        if not args.no_memory:
            long = work / "long.txt"
            long.write_text("\n".join(url_list(10 * args.pages, args.hosts)) + "\n")
            small, large = peak_rss_mb(links, work / "m1"), peak_rss_mb(long, work / "m2")
            results.update(rss_mb=round(small, 1), rss_mb_10x=round(large, 1))
            print(f"peak RSS: {small:.0f} MB for {args.pages} URLs, {large:.0f} MB for "
                  f"{10 * args.pages}", flush=True)  # fmt: skip
        if args.clients:
            for kind in ("aiohttp", "httpx"):
                wall_c, cpu_c, failed = asyncio.run(client_cpu(kind, urls, 256))
                results[f"{kind}_cpu_ms_per_get"] = round(1000 * cpu_c / len(urls), 3)
                results[f"{kind}_s"] = round(wall_c, 2)
                results[f"{kind}_failed"] = failed
                print(f"{kind}: {len(urls)} GETs in {wall_c:.2f} s, "
                      f"{1000 * cpu_c / len(urls):.2f} ms CPU a request, {failed} failed",
                      flush=True)  # fmt: skip
        print(json.dumps(results))
    finally:
        server.terminate()
        server.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
