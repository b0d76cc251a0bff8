"""Owned and resumable: kill -9 at any instant and rerun; a full disk; two fetches into one
directory; parts that split the hosts between machines."""

from __future__ import annotations

import base64
import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from _loopback_web import delayed, page

ARGS = ["--allow-private", "--ignore-robots", "--delay", "0", "--retry-wait", "0.05"]


def noise_page(seed: int, size: int) -> bytes:
    """An HTML page that gzip cannot shrink much."""
    text = base64.b64encode(random.Random(seed).randbytes(size)).decode()
    words = " ".join(text[i : i + 7] for i in range(0, len(text), 7))
    return f"<html><body><p>{words}</p></body></html>".encode()


def check_complete(directory: Path, urls: list[str], log: str = "fetch.jsonl") -> None:
    """Every URL logged once, its response in the WARC files exactly once, nothing open."""
    from warcio.archiveiterator import ArchiveIterator

    lines = [json.loads(line) for line in (directory / log).read_text().splitlines()]
    assert sorted(line["url"] for line in lines) == sorted(urls)
    assert all(line["status"] == 200 for line in lines), [x for x in lines if x["status"] != 200]
    responses: Counter[str] = Counter()
    for path in sorted(directory.glob("*.warc.gz")):
        with open(path, "rb") as handle:
            for record in ArchiveIterator(handle):
                if record.rec_type == "response":
                    responses[record.rec_headers.get_header("WARC-Target-URI")] += 1
                    record.raw_stream.read()
    assert responses == Counter(urls)
    assert not list(directory.glob("*.open"))


def start(links: Path, out: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "gpt2cli", "corpus", "fetch", str(links), "-o", str(out), *ARGS,
         *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )  # fmt: skip


def test_kill_9_at_any_instant_then_rerun_gives_every_url_once(gpt2, tmp_path, new_site):
    sites = [new_site({"*": delayed(page(noise_page(i, 6000)), 0.04)}) for i in range(5)]
    urls = [site.url(f"/{n}") for site in sites for n in range(60)]
    links = tmp_path / "links.txt"
    links.write_text("\n".join(urls) + "\n")
    out = tmp_path / "out"
    log = out / "fetch.jsonl"
    chooser = random.Random(7)
    for round_ in range(4):
        process = start(links, out)
        if round_:  # the first kill lands while the input is read; the others mid-crawl
            deadline = time.monotonic() + 30
            before = len(log.read_bytes().splitlines()) if log.exists() else 0
            while time.monotonic() < deadline and process.poll() is None:
                if log.exists() and len(log.read_bytes().splitlines()) > before:
                    break
                time.sleep(0.01)
            time.sleep(chooser.uniform(0.0, 0.3))
        else:
            time.sleep(0.3)
        process.send_signal(signal.SIGKILL)
        process.wait()
    # the servers' last writes to the killed client are over before this process runs a
    # `gpt2` in-process (which restores SIGPIPE's default action while it runs)
    time.sleep(0.5)
    done = len(log.read_text().splitlines())
    assert 0 < done < len(urls), "the kills did not land mid-crawl"
    final = gpt2("corpus", "fetch", str(links), "-o", str(out), *ARGS, "--stats",
                 str(tmp_path / "stats.json"))  # fmt: skip
    assert final.code == 0, final.stderr
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["already_done"] == done and stats["documents_out"] == len(urls) - done
    check_complete(out, urls)
    extracted = gpt2("corpus", "extract", *map(str, sorted(out.glob("*.warc.gz"))), "-j", "1")
    assert extracted.code == 0, extracted.stderr
    assert f"{len(urls)} in" in extracted.stderr
    # a rerun of a finished fetch fetches nothing
    hits = sum(sum(site.hits.values()) for site in sites)
    again = gpt2("corpus", "fetch", str(links), "-o", str(out), *ARGS)
    assert again.code == 0 and sum(sum(site.hits.values()) for site in sites) == hits


def test_warc_files_rotate_at_warc_size(gpt2, tmp_path, new_site):
    site = new_site({"*": page(noise_page(1, 3000))})
    urls = [site.url(f"/{n}") for n in range(12)]
    links = tmp_path / "links.txt"
    links.write_text("\n".join(urls))
    result = gpt2("corpus", "fetch", str(links), "-o", str(tmp_path / "out"), *ARGS,
                  "--warc-size", "10k")  # fmt: skip
    assert result.code == 0, result.stderr
    files = sorted(p.name for p in (tmp_path / "out").glob("*.warc.gz"))
    assert len(files) >= 3 and files[0] == "fetch-00000.warc.gz"
    assert all((tmp_path / "out" / name).stat().st_size < 20_000 for name in files)
    check_complete(tmp_path / "out", urls)


@pytest.fixture
def small_disk(tmp_path):
    disk = tmp_path / "disk"
    disk.mkdir()
    if (
        os.geteuid() != 0
        or subprocess.run(
            ["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True
        ).returncode
    ):
        pytest.skip("needs root to mount a small tmpfs")
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=False)


def test_a_full_disk_is_one_line_and_a_rerun_with_room_completes(gpt2, tmp_path, new_site,
                                                                 small_disk):  # fmt: skip
    site = new_site({"*": page(noise_page(2, 12000))})
    urls = [site.url(f"/{n}") for n in range(40)]
    links = tmp_path / "links.txt"
    links.write_text("\n".join(urls))
    out = small_disk / "out"
    full = gpt2("corpus", "fetch", str(links), "-o", str(out), *ARGS)
    assert full.code == 1
    assert full.stderr.strip().count("\n") == 0 and "no space left" in full.stderr.lower()
    subprocess.run(["mount", "-o", "remount,size=8m", str(small_disk)], check=True)
    rerun = gpt2("corpus", "fetch", str(links), "-o", str(out), *ARGS)
    assert rerun.code == 0, rerun.stderr
    check_complete(out, urls)


def test_two_fetches_into_one_directory_are_refused(gpt2, tmp_path, new_site):
    site = new_site({"*": delayed(page("x"), 0.2)})
    links = tmp_path / "links.txt"
    links.write_text("\n".join(site.url(f"/{n}") for n in range(30)))
    out = tmp_path / "out"
    first = start(links, out)
    try:
        deadline = time.monotonic() + 30
        while not (out / ".fetch.lock").exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        second = gpt2("corpus", "fetch", str(links), "-o", str(out), *ARGS)
        assert second.code == 1
        assert "in use by pid" in second.stderr and second.stderr.count("\n") == 1
    finally:
        first.kill()
        first.wait()
        time.sleep(0.5)  # as above: the server's writes to the killed client are over


def test_parts_split_the_hosts_and_keep_one_split_per_directory(gpt2, tmp_path, new_site):
    sites = [new_site({"*": page("x")}) for _ in range(6)]
    urls = [site.url(f"/{n}") for site in sites for n in range(3)]
    links = tmp_path / "links.txt"
    links.write_text("\n".join(urls))
    out = tmp_path / "out"
    for part in ("0/2", "1/2"):
        result = gpt2("corpus", "fetch", str(links), "-o", str(out), *ARGS, "--part", part)
        assert result.code == 0, result.stderr
    hosts = []
    fetched = []
    for part in range(2):
        lines = (out / f"fetch-{part:05d}-of-00002.jsonl").read_text().splitlines()
        urls_of_part = [json.loads(line)["url"] for line in lines]
        fetched += urls_of_part
        hosts.append({url.split("/")[2] for url in urls_of_part})
    assert sorted(fetched) == sorted(urls) and not hosts[0] & hosts[1]
    assert hosts[0] and hosts[1]  # six hosts land on both sides
    assert all(sum(site.hits.values()) == 3 for site in sites)
    other = gpt2("corpus", "fetch", str(links), "-o", str(out), *ARGS, "--part", "0/3")
    assert other.code == 2 and "I/2" in other.stderr
    bad = gpt2("corpus", "fetch", str(links), "-o", str(out), "--part", "2/2")
    assert bad.code == 2 and bad.stderr.count("\n") == 1


def test_parts_started_together_share_one_directory(tmp_path, new_site):
    sites = [new_site({"*": page("x")}) for _ in range(5)]
    urls = [site.url(f"/{n}") for site in sites for n in range(4)]
    links = tmp_path / "links.txt"
    links.write_text("\n".join(urls))
    out = tmp_path / "out"
    processes = [start(links, out, "--part", f"{part}/4") for part in range(4)]
    for process in processes:
        _, stderr = process.communicate(timeout=120)
        assert process.returncode == 0, stderr
    fetched = []
    for log in sorted(out.glob("fetch-*-of-00004.jsonl")):
        fetched += [json.loads(line)["url"] for line in log.read_text().splitlines()]
    assert sorted(fetched) == sorted(urls)
    assert (out / "fetch-parts").read_text() == "4\n"
