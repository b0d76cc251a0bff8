"""Loopback sites for the fetch tests (see tests/_loopback_web.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from _loopback_web import Site


@pytest.fixture
def sites() -> Iterator[list[Site]]:
    """Sites on 127.0.0.2, 127.0.0.3, ...: ``site = make(routes)`` via ``sites.new``."""
    made: list[Site] = []
    yield made
    for site in made:
        site.close()


@pytest.fixture
def new_site(sites: list[Site]):
    def make(routes=None, address: str | None = None) -> Site:
        site = Site(address or f"127.0.0.{len(sites) + 2}", routes)
        sites.append(site)
        return site

    return make
