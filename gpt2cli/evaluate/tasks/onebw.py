"""One Billion Word benchmark (held-out shard 0): perplexity per word.

The file ``news.en.heldout-00000-of-00050`` (one tokenized sentence per line) from
the benchmark's r13 release. Sentences are shuffled in the source, so each is scored as its
own document (after ``<|endoftext|>``), through a detokenizer that undoes the spacing around
punctuation. ``word_perplexity`` = exp(total NLL / words), words = whitespace tokens of the
original line plus one end-of-sentence per line (the benchmark's convention).

``--limit N`` evaluates the first N sentences.
"""

from __future__ import annotations

import math
from pathlib import Path

from gpt2cli.evaluate import sample_log
from gpt2cli.evaluate.language_model import LanguageModel
from gpt2cli.evaluate.tasks._taskio import read_sentences
from gpt2cli.evaluate.tasks.base import (
    DataFile,
    EvalOptions,
    Task,
    TaskResult,
    word_perplexity_metrics,
)
from gpt2cli.evaluate.tasks.detokenize import onebw_detokenizer


class OneBillionWord(Task):
    name = "1bw"
    version = 1.0
    description = "One Billion Word benchmark, held-out shard 0: word perplexity"
    paper_metric = "word_perplexity"
    data_files = (
        DataFile(
            name="news.en.heldout-00000-of-00050",
            url=None,
            sha256=None,
            source="1-billion-word-language-modeling-benchmark-r13output.tar.gz "
            "(heldout-monolingual.tokenized.shuffled/), statmt.org/lm-benchmark",
        ),
    )

    def evaluate(self, lm: LanguageModel, data: Path, options: EvalOptions) -> TaskResult:
        lines = read_sentences(data, self.data_files[0].name)
        total = len(lines)
        if options.limit is not None:
            lines = lines[: options.limit]
        texts = [onebw_detokenizer(line.strip()) for line in lines]
        results = lm.rolling_nll_many(texts)
        nll = math.fsum(n for n, _ in results)
        tokens = sum(t for _, t in results)
        words = sum(len(line.split()) + 1 for line in lines)
        n_bytes = sum(len(line.encode("utf-8")) + 1 for line in lines)
        metrics = word_perplexity_metrics(nll, words, tokens, n_bytes)
        return TaskResult(
            metrics,
            n=len(lines),
            extra={"original": total, "tokens": tokens, "words": words},
            samples=[
                sample_log.rolling(doc_id, text, nll, count, words=len(line.split()) + 1)
                for doc_id, (text, line, (nll, count)) in enumerate(zip(texts, lines, results))
            ],
        )


TASKS = [OneBillionWord()]
