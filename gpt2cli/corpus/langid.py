"""Language identification with py3langid, whose model ships inside its wheel.

py3langid (a maintained fork of Lui and Baldwin's langid.py, 97 languages, BSD licence)
loads its bundled naive-Bayes model from the package, so nothing is downloaded at run time,
and it needs only numpy. The model is read once per process, on first use.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

MAX_CHARS = 1500  # the first characters are enough to tell a language, at a bounded cost


@lru_cache(maxsize=1)
def _identifier() -> Any:
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    return LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)


def identify(text: str) -> tuple[str, float]:
    """The most likely language code (ISO 639-1) of ``text`` and its probability."""
    language, probability = _identifier().classify(text[:MAX_CHARS].replace("\n", " "))
    return str(language), float(probability)
