"""GPT-2's byte-level BPE through tiktoken, from ranks bundled in the package (no network)."""

from __future__ import annotations

import base64
import hashlib
from functools import lru_cache
from importlib import resources

import tiktoken

from gpt2cli.errors import Gpt2Error

EOT = 50256
EOT_TEXT = "<|endoftext|>"
VOCAB_SIZE = 50257
RANKS_FILE = "gpt2.tiktoken"
RANKS_SHA256 = "306cd27f03c1a714eca7108e03d66b7dc042abe8c258b44c199a7ed9838dd930"
# GPT-2's pre-tokenization pattern (tiktoken's r50k/gpt2 pattern).
PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""


def _load_ranks() -> dict[bytes, int]:
    data = resources.files("gpt2cli.assets").joinpath(RANKS_FILE).read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    if digest != RANKS_SHA256:
        raise Gpt2Error(
            f"the bundled BPE ranks {RANKS_FILE} are corrupt (sha256 {digest[:12]}…)",
            "reinstall gpt2cli",
        )
    ranks: dict[bytes, int] = {}
    for line in data.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


@lru_cache(maxsize=1)
def get_encoding() -> tiktoken.Encoding:
    """The GPT-2 encoding: ids equal ``tiktoken.get_encoding("gpt2")``'s."""
    return tiktoken.Encoding(
        name="gpt2",
        pat_str=PATTERN,
        mergeable_ranks=_load_ranks(),
        special_tokens={EOT_TEXT: EOT},
        explicit_n_vocab=VOCAB_SIZE,
    )


def encode(text: str) -> list[int]:
    """Ordinary text to ids; a literal ``<|endoftext|>`` in the text is encoded as text."""
    return get_encoding().encode_ordinary(text)


def decode(ids: list[int]) -> str:
    """Ids to text; bytes that are not valid UTF-8 on their own become U+FFFD."""
    return get_encoding().decode(ids, errors="replace")


def decode_bytes(ids: list[int]) -> bytes:
    return get_encoding().decode_bytes(ids)


def token_bytes(token: int) -> bytes:
    return get_encoding().decode_single_token_bytes(token)
