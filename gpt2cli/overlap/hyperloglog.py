"""HyperLogLog over n-gram hashes: the distinct n-gram estimate that sizes a filter and that
its file keeps (2**HLL_PRECISION uint8 registers)."""

from __future__ import annotations

import math

import numpy as np

from gpt2cli.splitmix import mix_array

HLL_PRECISION = 14
HLL_REGISTERS = 1 << HLL_PRECISION

_U64 = np.uint64
_SEED_HLL = _U64(0xE7037ED1A0B428DB)


def hll_update(registers: np.ndarray, hashes: np.ndarray) -> None:
    """Add n-gram hashes to HyperLogLog registers (uint8, 2**HLL_PRECISION of them)."""
    if hashes.size == 0:
        return
    x = mix_array(hashes ^ _SEED_HLL)
    index = (x >> _U64(64 - HLL_PRECISION)).astype(np.intp)
    rest_bits = 64 - HLL_PRECISION  # 50 bits: exact in float64
    rest = (x & _U64((1 << rest_bits) - 1)).astype(np.float64)
    _, exponent = np.frexp(rest)  # rest = mantissa * 2**exponent, floor(log2 rest) = exponent - 1
    rank = (rest_bits + 1 - exponent).astype(np.uint8)  # leading zeros + 1; 51 when rest == 0
    higher = rank > registers[index]
    if higher.any():
        np.maximum.at(registers, index[higher], rank[higher])


def hll_estimate(registers: np.ndarray) -> float:
    """HyperLogLog cardinality estimate (with linear counting for small sets)."""
    size = registers.size
    alpha = 0.7213 / (1 + 1.079 / size)
    estimate = alpha * size * size / float(np.sum(np.ldexp(1.0, -registers.astype(np.int64))))
    zeros = int(np.count_nonzero(registers == 0))
    if estimate <= 2.5 * size and zeros:
        estimate = size * math.log(size / zeros)
    return estimate
