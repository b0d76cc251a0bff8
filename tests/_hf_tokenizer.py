"""Test helper: write GPT-2's tokenizer files (vocab.json, merges.txt) from the bundled ranks.

The tests never download anything; transformers' GPT2TokenizerFast (used by
lm-evaluation-harness's ``hf`` backend) reads these files, which give the same ids as
``gpt2cli.text.tokenizer`` (checked in the fidelity test).
"""

from __future__ import annotations

import json
from pathlib import Path

from gpt2cli.text.tokenizer import EOT, EOT_TEXT, get_encoding


def _bytes_to_unicode() -> dict[int, str]:
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    codes = printable[:]
    extra = 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return dict(zip(printable, map(chr, codes)))


def _split(ranks: dict[bytes, int], token: bytes, max_rank: int) -> list[bytes]:
    parts = [bytes([b]) for b in token]
    while True:
        best = None
        best_rank = None
        for i in range(len(parts) - 1):
            rank = ranks.get(parts[i] + parts[i + 1])
            if rank is not None and rank < max_rank and (best_rank is None or rank < best_rank):
                best, best_rank = i, rank
        if best is None:
            return parts
        parts = parts[:best] + [parts[best] + parts[best + 1]] + parts[best + 2 :]


def write_gpt2_tokenizer(directory: Path) -> None:
    ranks = get_encoding()._mergeable_ranks
    table = _bytes_to_unicode()

    def text(token: bytes) -> str:
        return "".join(table[b] for b in token)

    vocab = {text(token): rank for token, rank in ranks.items()}
    vocab[EOT_TEXT] = EOT
    merges = []
    for token, rank in sorted(ranks.items(), key=lambda item: item[1]):
        if len(token) < 2:
            continue
        left, right = _split(ranks, token, rank)
        merges.append(f"{text(left)} {text(right)}")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.json").write_text(json.dumps(vocab, ensure_ascii=False))
    (directory / "merges.txt").write_text("#version: 0.2\n" + "\n".join(merges) + "\n")
    (directory / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "GPT2Tokenizer",
                "model_max_length": 1024,
                "bos_token": EOT_TEXT,
                "eos_token": EOT_TEXT,
                "unk_token": EOT_TEXT,
                "add_prefix_space": False,
            }
        )
    )
