"""Small helpers shared by the choice and generation tasks (cbt, winograd, coqa, cnndm, wmt14,
nq, hellaswag): reading their data files with errors that name the file and the line, SQuAD
answer normalisation, and argmax with lm-evaluation-harness's tie rule.

The registry skips modules whose name starts with ``_``, so this one defines no task.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterator, Sequence
from pathlib import Path

from gpt2cli.evaluate.tasks.base import data_error


def read_text(path: Path) -> str:
    """The whole file as UTF-8 text; Gpt2Error naming the file when it cannot be read."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        hint = "see `gpt2 eval --list` for where to get it"
        raise data_error(path, None, "no such file", hint) from None
    except OSError as exc:
        raise data_error(path, None, f"cannot read: {exc.strerror or exc}") from exc
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise data_error(path, line, "not UTF-8 text") from exc


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict]]:
    """(line number, object) for each non-blank line of a JSON Lines file."""
    text = read_text(path)
    lines = text.split("\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            last = number == len(lines) or not any(rest.strip() for rest in lines[number:])
            what = "truncated JSON line" if last and not text.endswith("\n") else "not JSON"
            raise data_error(path, number, f"{what} ({exc.msg})") from exc
        if not isinstance(obj, dict):
            raise data_error(path, number, "expected a JSON object")
        yield number, obj


def field(path: Path, line: int, obj: dict, key: str, kind: type | tuple[type, ...]):
    """obj[key] checked to be of ``kind``; Gpt2Error naming file, line and field otherwise."""
    if key not in obj:
        raise data_error(path, line, f"missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise data_error(path, line, f"field {key!r} should be {names}, not {type(value).__name__}")
    return value


def check_limit(limit: int | None) -> int | None:
    if limit is not None and limit < 1:
        from gpt2cli.errors import UsageError

        raise UsageError(f"--limit must be at least 1, not {limit}")
    return limit


def argmax(values: Sequence[float]) -> int:
    """Index of the largest value; the first on ties (as numpy.argmax, used by lm-eval)."""
    best = 0
    for i, value in enumerate(values):
        if value > values[best]:
            best = i
    return best


_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = frozenset(string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD/CoQA answer normalisation: lower case, drop ASCII punctuation, drop the articles
    a/an/the, collapse whitespace."""
    text = text.lower()
    text = "".join(ch for ch in text if ch not in _PUNCTUATION)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())
