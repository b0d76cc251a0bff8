"""Sizing a blocked Bloom filter: its false-positive rate at a load, and the smallest shape
(m bits, k bits per n-gram) that keeps a target rate at a capacity."""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING

import numpy as np

from gpt2cli.errors import UsageError

if TYPE_CHECKING:
    from gpt2cli.overlap.filter_file import BloomFilter

MIN_FP_RATE = 1e-30  # already ~1,150 bits per n-gram; below, the size explodes
OVER_CAPACITY_FACTOR = 2  # warn when the estimated rate exceeds the target this many times


def parse_count(value: str, option: str) -> int:
    """A count such as ``--capacity``: ``5e9``, ``5_000_000_000`` or ``5000000000``."""
    try:
        number = float(value.replace("_", ""))
    except ValueError:
        raise UsageError(
            f"{option} must be a number like 5e9 or 5000000000, not {value!r}"
        ) from None
    if not 1 <= number <= 2**62 or number != int(number):
        raise UsageError(f"{option} must be a whole number of at least 1, not {value!r}")
    return int(number)


def check_fp_rate(fp_rate: float) -> None:
    if not 0.0 < fp_rate < 1.0:
        raise UsageError(
            f"--fp-rate must be between 0 and 1 (exclusive), not {fp_rate:g}", "for example 1e-8"
        )
    if fp_rate < MIN_FP_RATE:
        raise UsageError(
            f"--fp-rate {fp_rate:g} is below the smallest supported rate, {MIN_FP_RATE:g}",
            "for example 1e-8",
        )


def check_n(n: int) -> None:
    if n < 1:
        raise UsageError(f"--n must be at least 1, not {n}")


def over_capacity(bloom_filter: BloomFilter) -> str | None:
    """A warning when the filter holds so many n-grams that its estimated false-positive rate
    is more than twice its target, else None."""
    header = bloom_filter.header
    if bloom_filter.estimated_fp_rate <= OVER_CAPACITY_FACTOR * header.fp_rate:
        return None
    return (
        "the filter is over capacity "
        f"(~{bloom_filter.distinct_estimate:,.0f} distinct n-grams for "
        f"{header.capacity:,}): its false-positive rate "
        f"{bloom_filter.estimated_fp_rate:.2e} exceeds the target "
        f"{header.fp_rate:.0e}"
    )


def _log_factorials(count: int) -> np.ndarray:
    return np.concatenate(([0.0], np.cumsum(np.log(np.arange(1, count, dtype=np.float64)))))


def fp_rate_at_load(load: float, k: int) -> float:
    """False-positive rate of a blocked filter whose blocks hold ``load`` distinct n-grams on
    average: a block holds c of them with probability Poisson(c; load), each of its k words
    then has a given bit set with probability 1 - (63/64)^c, and a new n-gram is a false
    positive when its k bits (one per word) are all set: sum_c P(c) (1 - (63/64)^c)^k."""
    if load <= 0.0:
        return 0.0
    count = np.arange(int(load + 12.0 * math.sqrt(load) + 40.0))
    log_pmf = -load + count * math.log(load) - _log_factorials(count.size)
    per_word = -np.expm1(count * math.log1p(-1.0 / 64.0))
    return float(np.sum(np.exp(log_pmf) * per_word**k))


def fp_rate_from_items(items: float, m: int, k: int) -> float:
    """The expected false-positive rate after ``items`` distinct n-grams (m bits, k per n-gram)."""
    return fp_rate_at_load(items / (m // (64 * k)), k)


def _max_load(fp_rate: float, k: int, steps: int = 60) -> float:
    """The largest average block load that keeps the false-positive rate at most ``fp_rate``."""
    low, high = 0.0, 64.0 * k
    while fp_rate_at_load(high, k) <= fp_rate:
        low, high = high, 2 * high
    for _ in range(steps):
        middle = (low + high) / 2
        low, high = (middle, high) if fp_rate_at_load(middle, k) <= fp_rate else (low, middle)
    return low


MAX_HASHES = 64
DEFAULT_HASHES_LIMIT = 32  # more words per block cost build time for a few % of memory


@functools.lru_cache(maxsize=16)
def default_hashes(fp_rate: float) -> int:
    """k for ``fp_rate``: the fewest bits per n-gram whose filter is within 10% of the smallest
    (over k <= 32); at 1e-8 that is 18, a filter 1.31x the size of a classic Bloom filter's."""
    loads = {k: _max_load(fp_rate, k, 24) for k in range(1, DEFAULT_HASHES_LIMIT + 1)}
    bits = {k: 64 * k / load for k, load in loads.items() if load > 0}
    smallest = min(bits.values())
    return min(k for k, per_item in bits.items() if per_item <= 1.1 * smallest)


def optimal_shape(capacity: int, fp_rate: float, hashes: int | None = None) -> tuple[int, int]:
    """(m bits, k bits per n-gram) of the smallest blocked filter that holds ``capacity``
    distinct n-grams at a false-positive rate of at most ``fp_rate`` (see ``fp_rate_at_load``).

    k is ``hashes`` when given (fewer: less work per n-gram, a larger filter), else
    ``default_hashes(fp_rate)``; m is 64 k times the number of blocks.
    """
    if not 0.0 < fp_rate < 1.0:
        raise UsageError(f"--fp-rate must be between 0 and 1 (exclusive), not {fp_rate:g}")
    if capacity < 1:
        raise UsageError(f"--capacity must be at least 1, not {capacity}")
    if hashes is not None and not 1 <= hashes <= MAX_HASHES:
        raise UsageError(f"--hashes must be from 1 to {MAX_HASHES}, not {hashes}")
    k = hashes or default_hashes(fp_rate)
    blocks = max(1, math.ceil(capacity / _max_load(fp_rate, k)))
    return 64 * k * blocks, k
