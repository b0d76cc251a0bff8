"""splitmix64 (Steele, Lea and Flood, 2014): the one 64-bit mixer behind every stable hash.

The shard split, the loader's permutations and the Bloom filter's hashing all use it; the
formats pin its outputs (``tests`` check them bit for bit), so the constants never change.
"""

from __future__ import annotations

import numpy as np

MASK64 = (1 << 64) - 1
GOLDEN = 0x9E3779B97F4A7C15  # 2^64 / φ: splitmix64's increment

_C1 = np.uint64(0xBF58476D1CE4E5B9)
_C2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31 = np.uint64(30), np.uint64(27), np.uint64(31)


def mix(x: int) -> int:
    """splitmix64's finaliser on one integer (taken modulo 2^64)."""
    x &= MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def splitmix64(x: int) -> int:
    """One splitmix64 step: the finaliser of ``x + GOLDEN``."""
    return mix(x + GOLDEN)


def mix_array(x: np.ndarray) -> np.ndarray:
    """The finaliser on a uint64 array (a new array; ``x`` is not changed)."""
    x = x ^ (x >> _S30)
    x *= _C1
    x ^= x >> _S27
    x *= _C2
    x ^= x >> _S31
    return x


def splitmix64_array(x: np.ndarray) -> np.ndarray:
    """One splitmix64 step on every element of a uint64 array."""
    with np.errstate(over="ignore"):
        return mix_array(x + np.uint64(GOLDEN))
