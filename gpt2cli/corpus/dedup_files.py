"""The staged dedup's intermediate files (``.ddp``): signatures, edges and clusters, as named
little-endian numpy arrays plus JSON metadata. The one home of the format.

Format version 2 (little-endian)::

    offset  size  field
    0       8     magic b"GPT2DDP2" (b"GPT2DDP1", version 1, had no checksums: refused)
    8       8     H, the length of the JSON header (uint64)
    16      4     CRC-32 of bytes 0..15 followed by the H header bytes (uint32)
    20      4     zero
    24      H     UTF-8 JSON, padded with spaces so that 24 + H is a multiple of 64:
                  {"meta": {...}, "arrays": {name: {"dtype", "shape", "offset"}},
                   "data_crc32": CRC-32 of every byte from 24 + H to the end of the file}
    24 + H  ...   the arrays' raw bytes, each at its "offset" (from the file's start, a
                  multiple of 64), zero bytes between them; the file ends with the last one

``meta["kind"]`` names the stage that wrote the file and fixes its arrays, their dtypes
and their number of dimensions (``KINDS``):

    signatures  exact u8 (N), band_keys u8 (bands, N), karma f8 (N); meta: params,
                documents N, digest (blake2b-128 of the part's bytes), source
    edges       edges i8 (E, 2): pairs of document numbers; meta: params, parts, bucket,
                buckets
    clusters    representative i8 (N), reason u1 (N: 0 kept, 1 exact, 2 near); meta:
                params, parts, offsets (each part's first document number), keep

A reader checks, before it allocates or maps anything, that every declared size fits in the
file, then both CRCs, then that each array has its kind's dtype (never an object dtype) and
shape; a file that fails is refused with one line naming it and the stage to rerun.
Arrays are then read through read-only memory maps.
"""

from __future__ import annotations

import json
import math
import os
import struct
import zlib
from typing import Any

import numpy as np

from gpt2cli.errors import Gpt2Error
from gpt2cli.fileio import atomic_write, open_file

MAGIC = b"GPT2DDP2"
OLD_MAGICS = {b"GPT2DDP1": 1}
PREFIX = struct.Struct("<8sQII")  # magic, H, CRC-32, zero
ALIGN = 64
CRC_BLOCK = 1 << 24

# kind -> array name -> (dtype, number of dimensions); the only arrays a reader accepts
KINDS: dict[str, dict[str, tuple[str, int]]] = {
    "signatures": {"exact": ("<u8", 1), "band_keys": ("<u8", 2), "karma": ("<f8", 1)},
    "edges": {"edges": ("<i8", 2)},
    "clusters": {"representative": ("<i8", 1), "reason": ("|u1", 1)},
}
STAGES = {"signatures": "dedup-signatures", "edges": "dedup-buckets", "clusters": "dedup-clusters"}


def _aligned(offset: int) -> int:
    return -(-offset // ALIGN) * ALIGN


def _crc(data: Any, start: int = 0) -> int:
    """CRC-32 of a bytes-like or uint8 array, in blocks (a memory map is read block by block)."""
    crc = start
    view = memoryview(data).cast("B")
    for begin in range(0, len(view), CRC_BLOCK):
        crc = zlib.crc32(view[begin : begin + CRC_BLOCK], crc)
    return crc


def write_arrays(path: str | os.PathLike[str], meta: dict[str, Any], arrays: dict) -> None:
    """Write ``arrays`` (name -> ndarray, as ``KINDS[meta["kind"]]`` lists them) and ``meta``
    to ``path`` atomically."""
    expected = KINDS[meta["kind"]]
    assert set(arrays) == set(expected), f"{meta['kind']} holds {sorted(expected)}"
    prepared = {
        name: np.ascontiguousarray(array, dtype=expected[name][0]) for name, array in arrays.items()
    }
    # the body: each array at a multiple of ALIGN from the body's start, zeros between
    places, crc, length = {}, 0, 0
    for name, array in prepared.items():
        padding = _aligned(length) - length
        crc = zlib.crc32(bytes(padding), crc)
        places[name] = length + padding
        crc = _crc(array.reshape(-1).view(np.uint8), crc)
        length = places[name] + array.nbytes
    header, start = b"", _aligned(PREFIX.size)
    while True:  # the header's own length moves the offsets: settle it
        table = {
            name: {"dtype": array.dtype.str, "shape": list(array.shape), "offset": start + place}
            for (name, array), place in zip(prepared.items(), places.values())
        }
        header = json.dumps({"meta": meta, "arrays": table, "data_crc32": crc}).encode("utf-8")
        if _aligned(PREFIX.size + len(header)) == start:
            break
        start = _aligned(PREFIX.size + len(header))
    header += b" " * (start - PREFIX.size - len(header))
    prefix = MAGIC + struct.pack("<Q", len(header))
    with atomic_write(path, "wb") as out:
        out.write(prefix + struct.pack("<II", zlib.crc32(header, zlib.crc32(prefix)), 0))
        out.write(header)
        for name, array in prepared.items():
            out.write(bytes(start + places[name] - out.tell()))
            out.write(memoryview(array.reshape(-1).view(np.uint8)))


def damaged(path: str | os.PathLike[str], what: str, kind: str | None = None) -> Gpt2Error:
    """The error of a file that is not as its writer wrote it."""
    stage = STAGES.get(kind or "", "the stage that wrote it")
    return Gpt2Error(f"{path}: damaged staged-dedup file: {what}", f"rerun {stage}")


def read_arrays(
    path: str | os.PathLike[str], kind: str | None = None
) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """``(meta, arrays)`` of a file written by ``write_arrays`` (whose ``meta["kind"]`` is
    ``kind``, when given), checked whole; the arrays are read-only memory maps."""
    with open_file(path, "staged-dedup file") as handle:
        file_size = os.fstat(handle.fileno()).st_size
        prefix = handle.read(PREFIX.size)
        if prefix[:8] in OLD_MAGICS:
            raise Gpt2Error(
                f"{path}: a staged-dedup file of format {OLD_MAGICS[prefix[:8]]}, without "
                f"checksums; this gpt2 reads format 2",
                f"rerun {STAGES.get(kind or '', 'the stage that wrote it')}",
            )
        if len(prefix) < 8 or prefix[:8] != MAGIC:
            raise Gpt2Error(f"{path}: not a gpt2 staged-dedup file")
        if len(prefix) < PREFIX.size:
            raise damaged(path, f"truncated at {file_size} bytes", kind)
        _, size, crc, zero = PREFIX.unpack(prefix)
        if size > file_size - PREFIX.size:
            what = f"declares a {size:,}-byte header in a {file_size:,}-byte file"
            raise damaged(path, what, kind)
        header = handle.read(size)
    if zlib.crc32(header, zlib.crc32(prefix[:16])) != crc or zero != 0:
        raise damaged(path, "header checksum mismatch", kind)
    try:
        document = json.loads(header)
        meta, table, data_crc = document["meta"], document["arrays"], document["data_crc32"]
        found = meta["kind"]
    except (ValueError, UnicodeDecodeError, KeyError, TypeError):
        raise damaged(path, "unreadable header", kind) from None
    if not isinstance(found, str) or found not in KINDS:
        raise damaged(path, f"unknown kind {found!r}", kind)
    if kind is not None and found != kind:
        raise Gpt2Error(f"{path}: holds {found}, not {kind}")
    if not isinstance(table, dict) or set(table) != set(KINDS[found]):
        raise damaged(path, f"unexpected arrays for {found!r}", kind)
    data_start = PREFIX.size + size
    spans = []
    for name, spec in table.items():
        spans.append((_array_span(path, name, spec, KINDS[found][name], file_size), name))
    spans.sort(key=lambda span: span[0][:2])  # by offset, then size
    end = data_start
    for (offset, nbytes, _, _), name in spans:
        if offset < end:
            raise damaged(path, f"array {name} overlaps the header or another array", found)
        end = offset + nbytes
    if end != file_size:
        raise damaged(path, f"{file_size - end:,} bytes past the last array", found)
    if file_size > data_start:
        body = np.memmap(path, dtype=np.uint8, mode="r", offset=data_start)
        crc = _crc(body)
        del body
    else:
        crc = 0
    if crc != data_crc:
        raise damaged(path, "array checksum mismatch", found)
    arrays: dict[str, np.ndarray] = {}
    for (offset, nbytes, dtype, shape), name in spans:
        if nbytes == 0:
            arrays[name] = np.zeros(shape, dtype=dtype)
        else:
            arrays[name] = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
    return meta, arrays


def _array_span(
    path: str | os.PathLike[str],
    name: str,
    spec: Any,
    expected: tuple[str, int],
    file_size: int,
) -> tuple[int, int, np.dtype, tuple[int, ...]]:
    """``(offset, bytes, dtype, shape)`` of one array, every field checked against what the
    writer writes and against the file's size."""
    dtype_name, ndim = expected
    try:
        offset, shape, declared = spec["offset"], spec["shape"], spec["dtype"]
    except (KeyError, TypeError):
        raise damaged(path, f"array {name}: incomplete description") from None
    if declared != dtype_name:
        raise damaged(path, f"array {name}: dtype {declared!r}, not {dtype_name!r}")
    if not isinstance(shape, list) or len(shape) != ndim:
        raise damaged(path, f"array {name}: shape {shape!r} is not {ndim}-dimensional")
    for value in [offset, *shape]:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise damaged(path, f"array {name}: {value!r} is not a size or an offset")
    dtype = np.dtype(dtype_name)
    nbytes = math.prod(shape) * dtype.itemsize
    if offset % ALIGN or offset + nbytes > file_size:
        raise damaged(path, f"array {name}: {nbytes:,} bytes at {offset:,} do not fit the file")
    return offset, nbytes, dtype, tuple(shape)
