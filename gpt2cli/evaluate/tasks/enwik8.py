"""enwik8 (bits per byte) and text8 (bits per character): the last 5 M of each file.

enwik8 is the first 10^8 bytes of an English Wikipedia XML dump; text8 its cleaned 10^8
characters (lower-case letters and spaces). The customary test split is the last 5,000,000
bytes (enwik8) / characters (text8); the model sees it as one document (rolling windows after
``<|endoftext|>``). enwik8's test part is moved forward past at most 3 UTF-8 continuation
bytes so that it starts on a character; ``bits_per_byte`` divides by the bytes actually
scored. text8 is ASCII, so bytes = characters and ``bits_per_char`` = bits per byte.

``--limit N`` scores only the first N × 1,000 bytes of the test part.
"""

from __future__ import annotations

import math
from pathlib import Path

from gpt2cli import console
from gpt2cli.evaluate import sample_log
from gpt2cli.evaluate.language_model import LanguageModel
from gpt2cli.evaluate.tasks.base import DataFile, EvalOptions, Metric, Task, TaskResult, data_error

LN2 = math.log(2.0)
TEST_BYTES = 5_000_000
FULL_BYTES = 100_000_000
LIMIT_UNIT = 1000


def test_part(path: Path, name: str) -> bytes:
    try:
        size = path.stat().st_size
        with open(path, "rb") as handle:
            handle.seek(max(0, size - TEST_BYTES))
            raw = handle.read()
    except OSError as error:
        raise data_error(path, None, f"cannot read ({error.strerror or error})") from None
    if size == 0:
        raise data_error(path, None, "empty file")
    if size != FULL_BYTES:
        console.warn(
            "eval",
            f"{path} is {size:,} bytes, not the published {FULL_BYTES:,} of "
            f"{name}; evaluating its last {min(size, TEST_BYTES):,} bytes",
        )
    if raw[:1] == b"\x1f" or raw[:2] == b"PK":
        raise data_error(path, None, f"compressed data: unzip {name}.zip first")
    skip = 0
    while skip < 3 and skip < len(raw) and raw[skip] & 0xC0 == 0x80:
        skip += 1
    return raw[skip:]


class ByteLevel(Task):
    version = 1.0

    def __init__(self, name: str, metric: str, description: str, url: str) -> None:
        self.name = name
        self.paper_metric = metric
        self.description = description
        self.data_files = (
            DataFile(
                name=name,
                url=url,
                sha256=None,
                archive_member=name,
                source=f"Matt Mahoney's {url}",
            ),
        )

    def evaluate(self, lm: LanguageModel, data: Path, options: EvalOptions) -> TaskResult:
        raw = test_part(data, self.name)
        if options.limit is not None:
            raw = raw[: options.limit * LIMIT_UNIT]
            while raw and raw[-1] & 0xC0 == 0x80:  # do not end inside a character
                raw = raw[:-1]
            if raw and raw[-1] >= 0xC0:
                raw = raw[:-1]
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as error:
            raise data_error(
                data, None, f"invalid UTF-8 at byte {error.start} of the test part (wrong file?)"
            ) from None
        nll, tokens = lm.rolling_nll(text)
        n_bytes = len(raw)
        bits = nll / n_bytes / LN2
        metrics = {
            self.paper_metric: Metric(bits, None, False),
            "token_perplexity": Metric(math.exp(nll / tokens), None, False),
        }
        if self.name == "text8":
            metrics["bits_per_byte"] = Metric(bits, None, False)
        return TaskResult(
            metrics,
            n=n_bytes,
            extra={"unit": "bytes", "tokens": tokens, "characters": len(text)},
            samples=[sample_log.rolling(0, text, nll, tokens, bytes=n_bytes)],
        )


TASKS = [
    ByteLevel(
        "enwik8",
        "bits_per_byte",
        "enwik8, last 5 M bytes: bits per byte",
        "http://mattmahoney.net/dc/enwik8.zip",
    ),
    ByteLevel(
        "text8",
        "bits_per_char",
        "text8, last 5 M characters: bits per character",
        "http://mattmahoney.net/dc/text8.zip",
    ),
]
