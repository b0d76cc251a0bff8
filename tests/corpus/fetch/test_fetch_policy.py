"""The private-address rule: loopback, private, link-local and reserved addresses are never
connected to unless allowed, whether named by a link, a redirect or a DNS answer."""

from __future__ import annotations

import json
import socket

import pytest
from _loopback_web import page, redirect

from gpt2cli.corpus.fetch.policy import AddressRefused, check_address, refusal


def log_of(directory) -> dict[str, dict]:
    lines = (directory / "fetch.jsonl").read_text().splitlines()
    return {entry["url"]: entry for entry in map(json.loads, lines)}


@pytest.mark.parametrize(
    "address, reason",
    [
        ("127.0.0.1", "loopback"),
        ("10.0.0.1", "private"),
        ("192.168.1.1", "private"),
        ("169.254.169.254", "link-local"),
        ("100.64.0.1", "non-global"),
        ("224.0.0.1", "multicast"),
        ("0.0.0.0", "unspecified"),
        ("240.0.0.1", "reserved"),
        ("::1", "loopback"),
        ("::ffff:127.0.0.1", "loopback"),
        ("fd00::1", "private"),
        ("fe80::1", "link-local"),
        ("93.184.216.34", None),
        ("2606:4700::1111", None),
    ],
)
def test_refusal_names_the_class_of_an_address(address, reason):
    assert refusal(address) == reason


def test_allowed_networks_let_only_themselves_through():
    from gpt2cli.corpus.fetch.policy import parse_networks

    allowed = parse_networks(["127.0.0.2/32"])
    check_address("127.0.0.2", allowed)
    with pytest.raises(AddressRefused):
        check_address("127.0.0.3", allowed)


def test_links_and_redirects_to_private_addresses_are_refused(gpt2, tmp_path, new_site):
    inner = new_site({"/": page("secret")})
    site = new_site(  # 127.0.0.3, the one address allowed
        {
            "/to-intranet": redirect("http://10.0.0.1/admin"),
            "/to-metadata": redirect("http://169.254.169.254/latest/meta-data/"),
            "/to-loopback": redirect(inner.url("/")),
            "/ok": page("fine"),
        }
    )
    urls = [site.url(p) for p in ("/to-intranet", "/to-metadata", "/to-loopback", "/ok")]
    urls += [inner.url("/"), f"http://127.0.0.1:{inner.port}/", "http://[::1]:9/"]
    links = tmp_path / "links.txt"
    links.write_text("\n".join(urls) + "\n")
    allow = ["--allow-address", "127.0.0.3", "--ignore-robots", "--delay", "0"]
    result = gpt2("corpus", "fetch", str(links), "-o", str(tmp_path / "out"), *allow)
    assert result.code == 0, result.stderr
    log = log_of(tmp_path / "out")
    assert log[site.url("/ok")]["status"] == 200
    for url in urls:
        if url != site.url("/ok"):
            assert log[url]["error"] == "private_address", (url, log[url])
    assert inner.hits == {}  # never reached, neither directly nor by the redirect
    # the redirect hop itself is kept: its record says where it pointed
    assert log[site.url("/to-intranet")]["status"] == 301


def test_a_public_name_that_resolves_to_loopback_is_refused(gpt2, tmp_path, new_site, monkeypatch):
    import aiohttp.connector

    site = new_site({"/": page("inside")})

    class Resolver(aiohttp.abc.AbstractResolver):
        """DNS as an attacker would answer it: a public name, a loopback address."""

        def __init__(self, *args, **kwargs):
            pass

        async def resolve(self, host, port=0, family=socket.AF_INET):
            assert host == "innocent.example.com", host  # nothing else is ever resolved
            return [{"hostname": host, "host": site.address, "port": port,
                     "family": socket.AF_INET, "proto": 0, "flags": 0}]  # fmt: skip

        async def close(self):
            pass

    monkeypatch.setattr(aiohttp.connector, "DefaultResolver", Resolver)
    url = f"http://innocent.example.com:{site.port}/"
    links = tmp_path / "links.txt"
    links.write_text(url + "\n")
    common = ["--ignore-robots", "--delay", "0", "--retries", "0"]
    result = gpt2("corpus", "fetch", str(links), "-o", str(tmp_path / "out"), *common)
    assert result.code == 0, result.stderr
    assert log_of(tmp_path / "out")[url]["error"] == "private_address"
    assert site.hits == {}
    allowed = gpt2("corpus", "fetch", str(links), "-o", str(tmp_path / "o2"), "--allow-private",
                   *common)  # fmt: skip
    assert allowed.code == 0
    assert log_of(tmp_path / "o2")[url]["status"] == 200 and site.hits["/"] == 1


def test_a_name_that_does_not_resolve_is_given_up_after_three_urls(gpt2, tmp_path, monkeypatch):
    import aiohttp.connector

    asked = []

    class Resolver(aiohttp.abc.AbstractResolver):
        """A domain that expired since 2017: no DNS answer."""

        def __init__(self, *args, **kwargs):
            pass

        async def resolve(self, host, port=0, family=socket.AF_INET):
            asked.append(host)
            raise OSError(socket.EAI_NONAME, "Name or service not known")

        async def close(self):
            pass

    monkeypatch.setattr(aiohttp.connector, "DefaultResolver", Resolver)
    urls = [f"http://gone.example.com/{n}" for n in range(6)]
    links = tmp_path / "links.txt"
    links.write_text("\n".join(urls) + "\n")
    result = gpt2("corpus", "fetch", str(links), "-o", str(tmp_path / "out"), "--ignore-robots",
                  "--delay", "0")  # fmt: skip
    assert result.code == 0, result.stderr
    errors = sorted(entry["error"] for entry in log_of(tmp_path / "out").values())
    assert errors == ["dns_error"] * 3 + ["host_unreachable"] * 3
    assert len(asked) == 3
