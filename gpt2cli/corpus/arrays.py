"""The file of the staged dedup's intermediate results: named numpy arrays plus JSON metadata.

Layout: the 8 bytes ``GPT2DDP1``, a little-endian uint64 ``H``, ``H`` bytes of UTF-8 JSON
(``{"meta": {...}, "arrays": {name: {"dtype", "shape", "offset"}}}``, offsets from the file's
start, each a multiple of 64), then the arrays' raw little-endian bytes. Arrays are read
through memory maps, so a stage touches only the slices it uses.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from gpt2cli.errors import Gpt2Error
from gpt2cli.fileio import atomic_write

MAGIC = b"GPT2DDP1"
ALIGN = 64


def write_arrays(path: str | os.PathLike[str], meta: dict[str, Any], arrays: dict) -> None:
    """Write ``arrays`` (name -> ndarray) and ``meta`` to ``path`` atomically."""
    prepared = {name: np.ascontiguousarray(a) for name, a in arrays.items()}
    table: dict[str, dict[str, Any]] = {}
    header = b""
    for _ in range(2):  # the header's own length moves the offsets: settle it
        offset = -(-(16 + len(header)) // ALIGN) * ALIGN
        for name, array in prepared.items():
            table[name] = {
                "dtype": array.dtype.newbyteorder("<").str,
                "shape": list(array.shape),
                "offset": offset,
            }
            offset += -(-array.nbytes // ALIGN) * ALIGN
        header = json.dumps({"meta": meta, "arrays": table}).encode("utf-8")
        header += b" " * (-(16 + len(header)) % ALIGN)
    with atomic_write(path, "wb") as out:
        out.write(MAGIC + struct.pack("<Q", len(header)) + header)
        for name, array in prepared.items():
            out.seek(table[name]["offset"])
            out.write(array.astype(table[name]["dtype"], copy=False).tobytes())
        out.truncate()


def read_arrays(path: str | os.PathLike[str], kind: str) -> tuple[dict[str, Any], dict]:
    """``(meta, arrays)`` of a file written by ``write_arrays`` whose ``meta["kind"]`` is
    ``kind``; the arrays are read-only memory maps."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
            if len(head) < 16 or head[:8] != MAGIC:
                raise Gpt2Error(f"{path}: not a gpt2 corpus dedup file")
            (size,) = struct.unpack("<Q", head[8:])
            document = json.loads(handle.read(size))
    except FileNotFoundError:
        raise Gpt2Error(f"{path}: no such file") from None
    except (ValueError, UnicodeDecodeError):
        raise Gpt2Error(f"{path}: damaged header") from None
    meta = document["meta"]
    if meta.get("kind") != kind:
        raise Gpt2Error(f"{path}: holds {meta.get('kind')}, not {kind}")
    arrays = {}
    file_size = Path(path).stat().st_size
    for name, spec in document["arrays"].items():
        shape = tuple(spec["shape"])
        dtype = np.dtype(spec["dtype"])
        count = int(np.prod(shape)) if shape else 1
        if spec["offset"] + count * dtype.itemsize > file_size:
            raise Gpt2Error(f"{path}: truncated")
        if count == 0:
            arrays[name] = np.zeros(shape, dtype=dtype)
        else:
            arrays[name] = np.memmap(
                path, dtype=dtype, mode="r", offset=spec["offset"], shape=shape
            )
    return meta, arrays
