"""The training data loader: (x, y) batches of token windows of a split, in a seeded
order without replacement per epoch (Feistel permutations, chunked for large splits),
sharded over ranks, with an exact resume state."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from gpt2cli.data.dataset import DEFAULT_CACHE_BYTES, ShardDataset
from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.splitmix import MASK64, mix_array, splitmix64


class _Permutation:
    """A pseudo-random permutation of [0, n) (Feistel network + cycle walking), computed
    index by index in O(1) memory: window order without replacement for any corpus size."""

    ROUNDS = 4

    def __init__(self, n: int, key: int) -> None:
        self.n = n
        bits = max(2, (max(n, 1) - 1).bit_length())
        bits += bits % 2
        self.half = np.uint64(bits // 2)
        self.mask = np.uint64((1 << (bits // 2)) - 1)
        keys = []
        value = key & MASK64
        for _ in range(self.ROUNDS):
            value = splitmix64(value)
            keys.append(value)
        self.keys = [np.uint64(k) for k in keys]

    def _once(self, x: np.ndarray) -> np.ndarray:
        left = x >> self.half
        right = x & self.mask
        for key in self.keys:
            left, right = right, left ^ (mix_array(right ^ key) & self.mask)
        return (left << self.half) | right

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        with np.errstate(over="ignore"):
            x = self._once(positions.astype(np.uint64))
            outside = x >= self.n
            while outside.any():
                x[outside] = self._once(x[outside])
                outside = x >= self.n
        return x.astype(np.int64)


GLOBAL_SHUFFLE_TOKENS = 1 << 26  # splits up to this size: one permutation of all windows
CHUNK_TOKENS = 1 << 16  # larger splits: chunks of consecutive windows of about this many tokens,
BUFFER_TOKENS = 1 << 25  # shuffled together in groups of about this many tokens


class _EpochOrder:
    """One epoch's order of the windows, position -> window, in O(1) memory.

    A split of up to GLOBAL_SHUFFLE_TOKENS tokens gets one pseudo-random permutation
    of all its windows (the decompressed-block cache holds it all anyway). A larger
    split is cut into chunks of C consecutive windows (about CHUNK_TOKENS tokens); the
    chunks are permuted, taken K at a time (about BUFFER_TOKENS tokens), and the K*C
    windows of each group are permuted among themselves. Every window still comes
    exactly once per epoch, each batch mixes windows from K places all over the split,
    and each block is decompressed about once per epoch instead of once per window.
    The last n mod C windows are left out of such an epoch (under 0.1% of it).
    """

    def __init__(self, n: int, seq_len: int, key: int) -> None:
        if n * seq_len <= GLOBAL_SHUFFLE_TOKENS:
            self.chunk = 0
            self.size = n
            self._global = _Permutation(n, key)
            return
        self.chunk = max(1, CHUNK_TOKENS // seq_len)
        chunks = n // self.chunk
        self.group = max(2, BUFFER_TOKENS // (self.chunk * seq_len))
        self.chunks = chunks
        self.size = chunks * self.chunk
        self.key = key
        self._chunks = _Permutation(chunks, splitmix64(key ^ 0xC4C4))
        self._groups: dict[int, _Permutation] = {}

    def _group(self, g: int) -> _Permutation:
        perm = self._groups.get(g)
        if perm is None:
            count = min(self.group, self.chunks - g * self.group)
            perm = _Permutation(count * self.chunk, splitmix64(self.key ^ (g + 1)))
            if len(self._groups) > 4:
                self._groups.clear()
            self._groups[g] = perm
        return perm

    def __call__(self, positions: np.ndarray) -> np.ndarray:
        if not self.chunk:
            return self._global(positions)
        span = self.group * self.chunk
        groups = positions // span
        slots = np.empty_like(positions)
        for g in np.unique(groups).tolist():
            where = groups == g
            slots[where] = self._group(g)(positions[where] - g * span)
        chunk_numbers = groups * self.group + slots // self.chunk
        return self._chunks(chunk_numbers) * self.chunk + slots % self.chunk


LOADER_STATE_FORMAT = "gpt2cli-token-loader"


class TokenLoader:
    """(x, y) batches of int64 tensors (B, T): windows of T+1 consecutive tokens of a split
    (across document boundaries), x = tokens[:-1], y = tokens[1:].

    Window w starts at token w*T, so each token is a target once per epoch. Each epoch
    visits the windows in a fresh pseudo-random order (without replacement) drawn from
    (seed, epoch), chunked for large splits (see ``_EpochOrder``); rank r of world_size
    takes global positions r, r + world_size, ...;
    every rank gets the same number of batches per epoch (the remainder is dropped).
    Iterating never ends unless ``epochs`` is given. ``state_dict()`` /
    ``load_state_dict()`` resume exactly at the next batch.
    """

    CHUNK_WINDOWS = 1 << 14

    def __init__(
        self,
        directory: str | os.PathLike[str] | ShardDataset,
        split: str,
        seq_len: int,
        batch_size: int,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        epochs: int | None = None,
        cache_bytes: int = DEFAULT_CACHE_BYTES,
    ) -> None:
        if seq_len < 1 or batch_size < 1:
            raise UsageError("sequence length and batch size must be positive")
        if world_size < 1 or not 0 <= rank < world_size:
            raise UsageError(f"rank {rank} is not in [0, {world_size})")
        self.dataset = (
            directory
            if isinstance(directory, ShardDataset)
            else ShardDataset(directory, cache_bytes=cache_bytes)
        )
        self.split = split
        self.seq_len = seq_len
        self.batch_size = batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.epochs = epochs
        self.dataset.check_split(split)
        tokens = self.dataset.num_tokens(split)
        self.num_windows = max(0, (tokens - 1) // seq_len)
        self.windows_per_epoch = _EpochOrder(self.num_windows, seq_len, 0).size
        self.batches_per_epoch = self.windows_per_epoch // world_size // batch_size
        if self.batches_per_epoch == 0:
            raise Gpt2Error(
                f"the {split} split of {self.dataset.directory} has {tokens:,} tokens: too few "
                f"for one batch of {batch_size} x {seq_len + 1} tokens"
                + (f" on each of {world_size} ranks" if world_size > 1 else ""),
                "lower --seq-len or the batch size, or pack more data",
            )
        self.epoch = 0
        self.step = 0  # batches taken in the current epoch
        self._permutation: _EpochOrder | None = None
        self._permutation_epoch = -1
        self._chunk: tuple[int, int, int, np.ndarray] | None = None

    def _order(self, epoch: int) -> _EpochOrder:
        if self._permutation is None or self._permutation_epoch != epoch:
            key = splitmix64(splitmix64(self.seed & MASK64) ^ epoch)
            self._permutation = _EpochOrder(self.num_windows, self.seq_len, key)
            self._permutation_epoch = epoch
        return self._permutation

    def window_indices(self, epoch: int, step: int) -> np.ndarray:
        """The window numbers of batch ``step`` of ``epoch`` for this rank."""
        chunk = self._chunk
        if chunk is None or chunk[0] != epoch or not chunk[1] <= step < chunk[2]:
            # Permute many batches' positions at once: numpy's per-call cost is then shared.
            first = step
            last = min(self.batches_per_epoch, step + max(1, self.CHUNK_WINDOWS // self.batch_size))
            positions = np.arange(first * self.batch_size, last * self.batch_size, dtype=np.int64)
            windows = self._order(epoch)(positions * self.world_size + self.rank)
            chunk = self._chunk = (epoch, first, last, windows.reshape(-1, self.batch_size))
        return chunk[3][step - chunk[1]]

    def next_numpy(self) -> np.ndarray:
        """The next batch as a (B, T+1) uint16 array (a fresh array each call)."""
        if self.step >= self.batches_per_epoch:
            self.epoch += 1
            self.step = 0
        if self.epochs is not None and self.epoch >= self.epochs:
            raise StopIteration
        windows = self.window_indices(self.epoch, self.step)
        out = np.empty((self.batch_size, self.seq_len + 1), dtype=np.uint16)
        read_into = self.dataset.read_into
        split = self.split
        t = self.seq_len
        for row, window in enumerate(windows.tolist()):
            read_into(split, window * t, out[row])
        self.step += 1
        return out

    def __iter__(self) -> TokenLoader:
        return self

    def __next__(self) -> tuple[Any, Any]:
        import torch

        batch = torch.from_numpy(self.next_numpy().astype(np.int64))
        return batch[:, :-1].contiguous(), batch[:, 1:].contiguous()

    def state_dict(self) -> dict[str, Any]:
        return {
            "format": LOADER_STATE_FORMAT,
            "version": 1,
            "split": self.split,
            "seq_len": self.seq_len,
            "batch_size": self.batch_size,
            "seed": self.seed,
            "world_size": self.world_size,
            "rank": self.rank,
            "dataset": self.dataset.fingerprint(self.split),
            "num_windows": self.num_windows,
            "epoch": self.epoch,
            "consumed": self.step * self.batch_size * self.world_size,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if not isinstance(state, dict) or state.get("format") != LOADER_STATE_FORMAT:
            raise Gpt2Error("not a token loader state")
        for key in ("split", "seq_len", "batch_size", "seed"):
            if state.get(key) != getattr(self, key):
                raise Gpt2Error(
                    f"cannot resume the data position: {key} was {state.get(key)!r}, "
                    f"now {getattr(self, key)!r}"
                )
        if state.get("dataset") != self.dataset.fingerprint(self.split):
            raise Gpt2Error(
                "cannot resume the data position: the shards of the "
                f"{self.split} split changed since it was saved"
            )
        per_step = self.batch_size * self.world_size
        consumed = int(state["consumed"])
        if consumed % per_step:
            raise Gpt2Error(
                f"cannot resume the data position on {self.world_size} ranks: "
                f"{consumed} windows taken is not a whole number of batches"
            )
        self.epoch = int(state["epoch"])
        self.step = consumed // per_step
