"""GPT-2's tokenizer as Hugging Face (and llama.cpp) read it, derived from the bundled ranks.

``vocab.json`` maps each token, its bytes written in GPT-2's byte-to-unicode alphabet, to its id;
``merges.txt`` lists the BPE merges in rank order, each the two parts the token was made of. Both
are computed from ``gpt2cli/assets/gpt2.tiktoken`` (no network, no copy of OpenAI's files): a
token of rank r is what byte-pair encoding with the merges of rank < r leaves as two parts.
``transformers.GPT2Tokenizer`` and llama.cpp's "gpt2" tokenizer give the same ids as
``gpt2cli.text.tokenizer`` with these files (tests/model/test_export.py).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path

from gpt2cli.fileio import create_new
from gpt2cli.text.tokenizer import EOT, EOT_TEXT, get_encoding

VOCAB_FILE = "vocab.json"
MERGES_FILE = "merges.txt"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
SPECIAL_TOKENS_FILE = "special_tokens_map.json"
FILES = (VOCAB_FILE, MERGES_FILE, TOKENIZER_CONFIG_FILE, SPECIAL_TOKENS_FILE)


@lru_cache(maxsize=1)
def byte_alphabet() -> dict[int, str]:
    """GPT-2's byte-to-unicode table: printable Latin-1 bytes stand for themselves, the other
    bytes (controls, space, ...) for the characters from U+0100 on, in byte order."""
    printable = [
        b
        for b in range(256)
        if ord("!") <= b <= ord("~") or ord("¡") <= b <= ord("¬") or ord("®") <= b <= ord("ÿ")
    ]
    table = {b: chr(b) for b in printable}
    others = [b for b in range(256) if b not in table]
    table.update({b: chr(256 + i) for i, b in enumerate(others)})
    return table


def token_text(token: bytes) -> str:
    """A token's bytes in the byte-to-unicode alphabet (``b" the"`` -> ``"Ġthe"``)."""
    table = byte_alphabet()
    return "".join(table[b] for b in token)


def _two_parts(ranks: dict[bytes, int], token: bytes) -> tuple[bytes, bytes]:
    """The pair the merge of ``token`` joins: BPE of its bytes with the merges ranked below it."""
    limit = ranks[token]
    parts = [bytes([b]) for b in token]
    while len(parts) > 2:
        best, best_rank = -1, limit
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < best_rank:
                best, best_rank = i, rank
        if best < 0:
            break
        parts[best : best + 2] = [parts[best] + parts[best + 1]]
    if len(parts) != 2:
        raise ValueError(f"token {token!r} is not one merge of two tokens")
    return parts[0], parts[1]


@lru_cache(maxsize=1)
def vocab_and_merges() -> tuple[list[str], list[str]]:
    """Every token's text by id (``<|endoftext|>`` last), and the merges (``"Ġ t"``) by rank."""
    ranks = get_encoding()._mergeable_ranks
    tokens = [""] * (EOT + 1)
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        tokens[rank] = token_text(token)
        if len(token) > 1:
            left, right = _two_parts(ranks, token)
            merges.append(f"{token_text(left)} {token_text(right)}")
    tokens[EOT] = EOT_TEXT
    return tokens, merges


def _write(path: Path, text: str) -> None:
    with create_new(path, "w") as handle:
        handle.write(text)
        handle.flush()
        os.fsync(handle.fileno())


def write_tokenizer_files(directory: str | os.PathLike[str], model_max_length: int = 1024) -> None:
    """Write vocab.json, merges.txt, tokenizer_config.json and special_tokens_map.json, as the
    released GPT-2 has them (``AutoTokenizer.from_pretrained(directory)`` loads them)."""
    root = Path(directory)
    tokens, merges = vocab_and_merges()
    vocab = {text: index for index, text in enumerate(tokens)}
    _write(root / VOCAB_FILE, json.dumps(vocab, ensure_ascii=False) + "\n")
    _write(root / MERGES_FILE, "#version: 0.2\n" + "\n".join(merges) + "\n")
    special = {"bos_token": EOT_TEXT, "eos_token": EOT_TEXT, "unk_token": EOT_TEXT}
    config = {
        "tokenizer_class": "GPT2Tokenizer",
        "model_max_length": model_max_length,
        "add_bos_token": False,
        "add_prefix_space": False,
        "clean_up_tokenization_spaces": False,
        **special,
    }
    _write(root / TOKENIZER_CONFIG_FILE, json.dumps(config, indent=2) + "\n")
    _write(root / SPECIAL_TOKENS_FILE, json.dumps(special, indent=2) + "\n")
