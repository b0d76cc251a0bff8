"""Text normalisation, version 1 (the GPT-2 paper, §4: "lower-cased alphanumeric words with a
single space as a delimiter"):

1. lower-case the text with Python's ``str.lower`` (full Unicode case mapping);
2. a *word* is a maximal run of characters for which ``str.isalnum()`` is true
   (Unicode letters and digits of any script); every other character (spaces,
   punctuation, symbols, underscores, combining marks) separates words;
3. the normalised text is the words joined by single spaces; an *n-gram* is n
   consecutive words of one document (never across documents).

ASCII text is normalised identically everywhere; characters outside ASCII follow
the Unicode database of the running Python (``unicodedata.unidata_version``).
"""

from __future__ import annotations

import re

import numpy as np

NORMALISATION_VERSION = 1

_NON_WORD = re.compile(r"[\W_]+")
_WORD = re.compile(r"[^\W_]+")
# ASCII fast path: upper-case letters to lower case, every other non-alphanumeric byte to a space.
_ASCII_TABLE = bytes(
    (c + 32 if 65 <= c <= 90 else c) if chr(c).isalnum() else 32 for c in range(128)
) + bytes(range(128, 256))


def words(text: str) -> list[str]:
    """The normalised words of ``text`` (normalisation version 1)."""
    return _WORD.findall(text.lower())


def normalise(text: str) -> str:
    """``text`` as lower-cased alphanumeric words separated by single spaces."""
    return " ".join(words(text))


_SPACE_TABLE = np.zeros(256, dtype=bool)
_SPACE_TABLE[list(b" \n\t\r\v\f")] = True


def _normalise_token(token: bytes) -> bytes:
    return _NON_WORD.sub(" ", token.decode("utf-8").lower()).encode("utf-8")


def normalised_bytes(text: str) -> bytes:
    """UTF-8 of the words of ``text``, separated by one or more spaces (fast; same words).

    ASCII bytes go through one ``bytes.translate``. Only the whitespace-delimited tokens
    that hold a non-ASCII character are decoded, lower-cased and split with the regular
    expression: ASCII whitespace is neither cased nor case-ignorable, so lower-casing a
    token alone (Greek final sigma included) equals lower-casing the whole text.
    """
    if text.isascii():
        return text.encode("ascii").translate(_ASCII_TABLE)
    data = text.encode("utf-8")
    array = np.frombuffer(data, dtype=np.uint8)
    spaces = np.flatnonzero(_SPACE_TABLE[array])
    non_ascii = np.flatnonzero(array >= 0x80)
    after = np.searchsorted(spaces, non_ascii)  # index of the first space after each byte
    token_ends = np.append(spaces, array.size)[after]
    token_starts = np.insert(spaces + 1, 0, 0)[after]
    first = np.flatnonzero(np.diff(token_starts, prepend=-1))  # one entry per token
    out: list[bytes] = []
    done = 0
    for begin, end in zip(token_starts[first].tolist(), token_ends[first].tolist()):
        out.append(data[done:begin])
        out.append(_normalise_token(data[begin:end]))
        done = end
    out.append(data[done:])
    return b"".join(out).translate(_ASCII_TABLE)
