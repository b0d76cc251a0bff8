"""Exact and near-duplicate removal as four stages that also run as one process.

1. ``signatures``: per document an exact key (a 64-bit hash of its sequence of normalised
   words, as ``gpt2cli.corpus.minhash`` splits them: case, spacing and punctuation do not
   count) and, for near duplicates, ``bands`` LSH keys of its MinHash signature.
2. ``bucket_edges``: documents sharing a key (one band, or the exact key) are joined by edges;
   keys are split into buckets by ``key % buckets``, so each bucket is an independent task.
3. ``resolve``: connected components of all edges are the clusters; each keeps its first
   document, or the one with the highest karma (then the first).
4. applying the result: a part's documents are written in input order, the kept ones only.

Documents are numbered 0, 1, ... across the parts in the order given, so the stages give the
result of one process over the concatenated input, whatever the number of parts or buckets.
Memory: a signature costs ``8 * (bands + 1) + 8`` bytes (216 MB per million documents at
``--near 0.5 --num-perm 128``: 25 bands); a bucket task holds its share of the keys of every
part plus edges; the cluster stage 8 bytes per document and 16 per edge.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass

import numpy as np

from gpt2cli import option_fields
from gpt2cli.corpus import minhash
from gpt2cli.corpus.jsonl import Record
from gpt2cli.errors import Gpt2Error
from gpt2cli.option_fields import at_least, in_range, one_of, option, require
from gpt2cli.splitmix import mix_array

KEPT, EXACT, NEAR = 0, 1, 2
REASONS = {EXACT: "exact", NEAR: "near"}
BATCH_DOCUMENTS = 2048
BATCH_BYTES = 8 << 20
_EXACT_TAG = np.uint64(0xD1B54A32D192ED03)


@dataclass(frozen=True)
class DedupParams:
    near: float | None = 0.5  # None: exact duplicates only
    ngram: int = 5
    num_perm: int = 128
    bands: int = 0
    rows: int = 0
    keep: str = "first"  # or "karma"
    karma_field: str = "karma"

    @staticmethod
    def make(
        near: float | None, ngram: int, num_perm: int, keep: str, karma_field: str
    ) -> DedupParams:
        bands = rows = 0
        if near is not None:
            bands, rows = _cached_bands(near, num_perm)
        return DedupParams(near, ngram, num_perm, bands, rows, keep, karma_field)

    def key(self) -> dict:
        """What must match between the stages of one run (keep may differ)."""
        fields = asdict(self)
        fields.pop("keep")
        fields.pop("karma_field")
        return fields


KEEP_RULES = ("first", "karma")


def check_keep(keep: str) -> None:
    require(keep, "--keep", one_of(*KEEP_RULES))


@dataclass(frozen=True)
class DedupOptions:
    """The options of ``gpt2 corpus dedup`` and its stages: each field is also its flag and
    --help text (:mod:`gpt2cli.option_fields`), in --help's order; checked when made."""

    near: float = option(
        0.5,
        "Jaccard threshold of near duplicates; LSH bands and rows are chosen from it and "
        "--num-perm (0.5 and 128: 25 bands of 5).",
    )
    exact_only: bool = option(False, "Remove exact duplicates only (no MinHash).")
    ngram: int = option(5, "Words per shingle.", rule=at_least(1))
    num_perm: int = option(128, "MinHash signature length.", rule=at_least(1))
    keep: str = option(
        "first",
        "Which document of a cluster stays: first, or karma (the highest).",
        rule=one_of(*KEEP_RULES),
    )
    karma_field: str = option("karma", "JSON field of --keep karma.")

    def __post_init__(self) -> None:
        option_fields.check(self)
        if not self.exact_only:  # a Jaccard similarity strictly between 0 and 1
            require(self.near, "--near", in_range(0, 1, low_open=True, high_open=True))

    def params(self) -> DedupParams:
        """The settings of the run, the LSH bands and rows chosen."""
        near = None if self.exact_only else self.near
        return DedupParams.make(near, self.ngram, self.num_perm, self.keep, self.karma_field)


_BANDS: dict[tuple[float, int], tuple[int, int]] = {}


def _cached_bands(threshold: float, num_perm: int) -> tuple[int, int]:
    if (threshold, num_perm) not in _BANDS:
        _BANDS[threshold, num_perm] = minhash.band_parameters(threshold, num_perm)
    return _BANDS[threshold, num_perm]


def exact_key(text: str) -> int:
    """The exact key of a document without words: blake2b-64 of its stripped text."""
    normal = text.strip().encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(normal, digest_size=8).digest(), "little")


@dataclass
class Signatures:
    exact: np.ndarray  # (N,) uint64
    keys: np.ndarray  # (N, bands) uint64
    karma: np.ndarray  # (N,) float64, -inf where absent

    @property
    def documents(self) -> int:
        return len(self.exact)


def _karma(data: dict, name: str) -> float:
    value = data.get(name)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return float("-inf")
    return float(value)


def signatures(records: Iterable[Record], params: DedupParams) -> Signatures:
    """Stage 1 over one part."""
    exact_parts: list[np.ndarray] = []
    key_parts: list[np.ndarray] = []
    karma: list[float] = []
    texts: list[str] = []
    size = 0

    def flush() -> None:
        nonlocal size
        found = minhash.batch_words(texts)
        exact = minhash.document_keys(found)
        for index in np.flatnonzero(found.counts == 0):
            exact[index] = exact_key(texts[index])
        exact_parts.append(exact)
        if params.near is not None:
            signature = minhash.signatures(found, params.ngram, params.num_perm)
            keys = minhash.band_keys(signature, params.bands, params.rows)
            # a document without words has no shingles: only its exact key may match
            empty = np.flatnonzero(signature[:, 0] == minhash.EMPTY)
            if len(empty):
                with np.errstate(over="ignore"):
                    salt = np.arange(1, params.bands + 1, dtype=np.uint64)
                    keys[empty] = mix_array(exact[empty, None] * np.uint64(3) + salt)
            key_parts.append(keys)
        texts.clear()
        size = 0

    for record in records:
        texts.append(record.text)
        karma.append(_karma(record.data, params.karma_field))
        size += len(record.text)
        if len(texts) >= BATCH_DOCUMENTS or size >= BATCH_BYTES:
            flush()
    if texts:
        flush()
    exact = np.concatenate(exact_parts) if exact_parts else np.zeros(0, np.uint64)
    keys = (
        np.concatenate(key_parts)
        if key_parts
        else np.zeros((len(exact), params.bands), dtype=np.uint64)
    )
    return Signatures(exact, keys, np.array(karma, dtype=np.float64))


def _columns(part: Signatures) -> Iterable[np.ndarray]:
    """Every key column of a part: each band's keys, then the exact keys (tagged apart)."""
    for band in range(part.keys.shape[1]):
        yield np.asarray(part.keys[:, band])
    with np.errstate(over="ignore"):
        yield mix_array(np.asarray(part.exact) ^ _EXACT_TAG)


def bucket_edges(parts: list[Signatures], bucket: int = 0, buckets: int = 1) -> np.ndarray:
    """Stage 2: ``(E, 2)`` int64 edges, each joining a document to the first document with
    the same key, over the keys with ``key % buckets == bucket``."""
    offsets = np.cumsum([0] + [part.documents for part in parts])
    columns = [list(_columns(part)) for part in parts]
    found: list[np.ndarray] = []
    for column in range(len(columns[0]) if columns else 0):
        keys_list, ids_list = [], []
        for index, part_columns in enumerate(columns):
            keys = part_columns[column]
            chosen = (
                np.flatnonzero(keys % np.uint64(buckets) == np.uint64(bucket))
                if buckets > 1
                else np.arange(len(keys))
            )
            keys_list.append(keys[chosen])
            ids_list.append(chosen + offsets[index])
        keys = np.concatenate(keys_list)
        ids = np.concatenate(ids_list).astype(np.int64)
        order = np.argsort(keys, kind="stable")  # ids stay ascending within equal keys
        keys, ids = keys[order], ids[order]
        same = keys[1:] == keys[:-1]
        if not same.any():
            continue
        group_start = np.flatnonzero(np.concatenate(([True], ~same)))
        first = np.repeat(ids[group_start], np.diff(np.append(group_start, len(ids))))
        duplicate = np.flatnonzero(np.concatenate(([False], same)))
        found.append(np.stack([first[duplicate], ids[duplicate]], axis=1))
    if not found:
        return np.zeros((0, 2), dtype=np.int64)
    return np.unique(np.concatenate(found), axis=0)


def components(documents: int, edges: np.ndarray) -> np.ndarray:
    """The smallest document number of each document's connected component (hooking and
    pointer jumping, vectorised)."""
    parent = np.arange(documents, dtype=np.int64)
    if len(edges) == 0:
        return parent
    a, b = np.asarray(edges[:, 0]), np.asarray(edges[:, 1])
    while True:
        root_a, root_b = parent[a], parent[b]
        differ = root_a != root_b
        if not differ.any():
            return parent
        low = np.minimum(root_a[differ], root_b[differ])
        high = np.maximum(root_a[differ], root_b[differ])
        np.minimum.at(parent, high, low)
        while True:
            jumped = parent[parent]
            if np.array_equal(jumped, parent):
                break
            parent = jumped


def resolve(
    documents: int, edges: np.ndarray, exact: np.ndarray, karma: np.ndarray, keep: str
) -> tuple[np.ndarray, np.ndarray]:
    """Stage 3: ``(representative, reason)``: for each document the one its cluster keeps,
    and KEPT, EXACT (same exact key as the kept one) or NEAR."""
    root = components(documents, edges)
    if keep == "karma":
        order = np.lexsort((np.arange(documents), -np.asarray(karma), root))
        first = np.concatenate(([True], root[order][1:] != root[order][:-1]))
        chosen = np.empty(documents, dtype=np.int64)
        chosen_of_root = order[first]
        chosen[root[order[first]]] = chosen_of_root
        representative = chosen[root]
    elif keep == "first":
        representative = root
    else:
        raise Gpt2Error(f"unknown keep rule {keep!r}")
    reason = np.full(documents, NEAR, dtype=np.uint8)
    exact = np.asarray(exact)
    reason[exact == exact[representative]] = EXACT
    reason[representative == np.arange(documents)] = KEPT
    return representative, reason


def resolve_parts(
    parts: list[Signatures], edges: list[np.ndarray], keep: str
) -> tuple[np.ndarray, np.ndarray]:
    """``resolve`` over parts numbered one after another, from every bucket's edges."""
    documents = sum(part.documents for part in parts)
    exact = np.concatenate([np.asarray(part.exact) for part in parts] or [np.zeros(0, np.uint64)])
    karma = np.concatenate([np.asarray(part.karma) for part in parts] or [np.zeros(0)])
    joined = np.concatenate([np.asarray(e) for e in edges]) if edges else np.zeros((0, 2), np.int64)
    return resolve(documents, joined, exact, karma, keep)
