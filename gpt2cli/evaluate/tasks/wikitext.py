"""WikiText-2 and WikiText-103 (raw test files): perplexity per word, per token, bits per byte.

As lm-evaluation-harness's ``wikitext`` task (on ``EleutherAI/wikitext_document_level``):

- ``wiki.test.raw`` is split into articles at top-level headings (a line that reads
  `` = Title = ``; ``= = Section = =`` lines stay inside their article), the way the
  ``wikitext_document_level`` dataset builds its ``page`` field;
- the model sees each article through lm-eval's WikiText detokenizer, scored with rolling
  windows after ``<|endoftext|>``;
- ``word_perplexity`` = exp(total NLL / total words), where an article's words are
  ``len(re.split(r"\\s+", page))`` of the *original* page; ``byte_perplexity`` and
  ``bits_per_byte`` use the original page's UTF-8 bytes; ``token_perplexity`` the tokens the
  model saw. These are corpus-level figures (no standard error).

``--limit N`` evaluates the first N articles.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from gpt2cli.evaluate import sample_log
from gpt2cli.evaluate.language_model import LanguageModel
from gpt2cli.evaluate.tasks._taskio import read_text
from gpt2cli.evaluate.tasks.base import DataFile, EvalOptions, Metric, Task, TaskResult, data_error
from gpt2cli.evaluate.tasks.detokenize import wikitext_detokenizer

LN2 = math.log(2.0)


def split_articles(text: str) -> list[str]:
    """Pages as ``EleutherAI/wikitext_document_level`` builds them from a raw WikiText file."""
    pages: list[str] = []
    current: list[str] = []
    for line in text.split("\n"):
        folded = line.replace("= = =", "===").replace("= =", "==").strip()
        if folded.startswith("= ") and folded.endswith(" ="):
            page = "\n".join(current)
            if page.strip():
                pages.append(page)
            current = []
        current.append(line)
    page = "\n".join(current)
    if page.strip():
        pages.append(page)
    return pages


def count_words(page: str) -> int:
    return len(re.split(r"\s+", page))


def perplexity_metrics(
    nlls: list[float], tokens: int, words: int, n_bytes: int
) -> dict[str, Metric]:
    total = math.fsum(nlls)
    return {
        "word_perplexity": Metric(math.exp(total / words), None, False),
        "byte_perplexity": Metric(math.exp(total / n_bytes), None, False),
        "bits_per_byte": Metric(total / n_bytes / LN2, None, False),
        "token_perplexity": Metric(math.exp(total / tokens), None, False),
    }


class WikiText(Task):
    version = 1.0
    paper_metric = "word_perplexity"

    def __init__(
        self, name: str, folder: str, size: str, url: str | None, sha256: str | None
    ) -> None:
        self.name = name
        self.description = f"WikiText-{size} raw test set: word perplexity (lm-eval 'wikitext')"
        self.data_files = (
            DataFile(
                name=f"{folder}/wiki.test.raw",
                url=url,
                sha256=sha256,
                source=f"the WikiText-{size} raw archive ({folder}-v1.zip, "
                "Salesforce/Merity et al.; mirrored at huggingface.co/datasets/ggml-org/ci "
                "for WikiText-2)",
                archive_member=f"{folder}/wiki.test.raw",
            ),
        )

    def evaluate(self, lm: LanguageModel, data: Path, options: EvalOptions) -> TaskResult:
        text = read_text(data)
        pages = split_articles(text)
        if (
            not any(line.strip().startswith("= ") for line in text.split("\n", 50)[:50])
            or not pages
        ):
            raise data_error(data, 1, "no ' = Title = ' article heading: not a raw WikiText file")
        total = len(pages)
        if options.limit is not None:
            pages = pages[: options.limit]
        texts = [wikitext_detokenizer(page) for page in pages]
        results = lm.rolling_nll_many(texts)
        nlls = [nll for nll, _ in results]
        tokens = sum(n for _, n in results)
        words = sum(count_words(page) for page in pages)
        n_bytes = sum(len(page.encode("utf-8")) for page in pages)
        return TaskResult(
            perplexity_metrics(nlls, tokens, words, n_bytes),
            n=len(pages),
            extra={
                "original": total,
                "tokens": tokens,
                "words": words,
                "bytes": n_bytes,
                "lm_eval_task": "wikitext",
            },
            samples=[
                sample_log.rolling(
                    doc_id,
                    text,
                    nll,
                    count,
                    words=count_words(page),
                    bytes=len(page.encode("utf-8")),
                )
                for doc_id, (text, page, (nll, count)) in enumerate(zip(texts, pages, results))
            ],
        )


TASKS = [
    WikiText(
        "wikitext2",
        "wikitext-2-raw",
        "2",
        "https://huggingface.co/datasets/ggml-org/ci/resolve/main/wikitext-2-raw-v1.zip",
        "ef7edb566e3e2b2d31b29c1fdb0c89a4cc683597484c3dc2517919c615435a11",
    ),
    WikiText("wikitext103", "wikitext-103-raw", "103", None, None),
]
