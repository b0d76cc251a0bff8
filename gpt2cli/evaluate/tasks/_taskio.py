"""Reading the tasks' data files, with errors that name the file and the line (text, JSON
Lines, checked fields), plus what several tasks score with: SQuAD answer normalisation and
argmax with lm-evaluation-harness's tie rule. (Finding the files is :mod:`.task_files`'s job.)

The registry skips modules whose name starts with ``_``, so this one defines no task.
"""

from __future__ import annotations

import json
import re
import string
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TypeVar

from gpt2cli.evaluate.tasks.base import data_error

T = TypeVar("T")


def read_text(path: Path) -> str:
    """The whole file as UTF-8 text with LF line endings, as the published files are written
    (a CRLF copy would put ``\r`` before every newline the model sees); Gpt2Error naming the
    file when it cannot be read."""
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        hint = "see `gpt2 eval --list` for where to get it"
        raise data_error(path, None, "no such file", hint) from None
    except OSError as exc:
        raise data_error(path, None, f"cannot read: {exc.strerror or exc}") from exc
    try:
        return raw.decode("utf-8").replace("\r\n", "\n")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise data_error(path, line, "not UTF-8 text") from exc


def read_sentences(path: Path, name: str) -> list[str]:
    """The non-blank lines of a file of one tokenized sentence per line (``name``, the file as
    published); a file that looks like JSON is a data error."""
    text = read_text(path)
    lines = [line for line in text.split("\n") if line.strip()]
    if not lines:
        raise data_error(path, None, "no sentences in the file (empty?)")
    for number, line in enumerate(text.split("\n")[:20], 1):
        if line.lstrip().startswith(("{", "[")):
            raise data_error(
                path, number, f"looks like JSON, expected one tokenized sentence per line ({name})"
            )
    return lines


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


def load_jsonl(
    path: Path, limit: int | None, parse: Callable[[int, dict], T], empty: str
) -> list[T]:
    """``parse(line, obj)`` of the first ``limit`` objects of a JSON Lines file; Gpt2Error
    ``empty`` when there are none."""
    examples: list[T] = []
    for line, obj in iter_jsonl(path):
        if limit is not None and len(examples) >= limit:
            break
        examples.append(parse(line, obj))
    if not examples:
        raise data_error(path, None, empty)
    return examples


def jsonl_strings(path: Path, key: str) -> list[tuple[int, str]]:
    """(line number, obj[key]) of each object of a JSON Lines file, each a string."""
    out: list[tuple[int, str]] = []
    for number, obj in iter_jsonl(path):
        if not isinstance(obj.get(key), str):
            raise data_error(path, number, f"expected a JSON object with a string {key!r}")
        out.append((number, obj[key]))
    if not out:
        raise data_error(path, None, "no examples in the file (empty?)")
    return out


def field(path: Path, line: int, obj: dict, key: str, kind: type | tuple[type, ...]):
    """obj[key] checked to be of ``kind``; Gpt2Error naming file, line and field otherwise."""
    if key not in obj:
        raise data_error(path, line, f"missing field {key!r}")
    value = obj[key]
    if not isinstance(value, kind) or isinstance(value, bool) and kind is int:
        names = kind.__name__ if isinstance(kind, type) else "/".join(k.__name__ for k in kind)
        raise data_error(path, line, f"field {key!r} should be {names}, not {type(value).__name__}")
    return value


def string_list(path: Path, line: int, obj: dict, key: str) -> list[str]:
    """obj[key] checked to be a non-empty list of strings."""
    values = field(path, line, obj, key, list)
    if not values or not all(isinstance(v, str) for v in values):
        raise data_error(path, line, f"field {key!r} should be a non-empty list of strings")
    return values


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
