"""CNN/Daily Mail summarisation (Hermann et al., 2015; See et al., 2017), test split.

Data: ``cnndm_test.jsonl``, JSON Lines with the fields ``article`` and ``highlights`` (the
reference summary, one sentence per line), as written by the Hugging Face dataset
``cnn_dailymail`` (config ``3.0.0``, split ``test``, 11,490 articles)::

    python -c "import datasets; datasets.load_dataset('cnn_dailymail', '3.0.0',
               split='test').to_json('cnndm_test.jsonl')"

Other fields (``id``) are ignored. There is no single public file of this export, so no URL.

Generation, as the GPT-2 paper (section 3.6): the article followed by "\\nTL;DR:", then 100
tokens sampled with top-k = 2 (seed = ``--seed``); the summary is the first 3 sentences of
those tokens. Articles longer than the model's context are cut at the end (their first tokens
are kept) so that article, "\\nTL;DR:" and the 100 new tokens fit. Sentences end at . ! or ?
(optionally followed by closing quotes or brackets) before whitespace, or at a newline.

Metrics: ROUGE-1, ROUGE-2 and ROUGE-L F-measures from Google's ``rouge_score`` library
(``RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)``), as fractions, averaged
over articles; ``rouge_avg`` is their mean (the paper's "R-AVG").
"""

from __future__ import annotations

import re
from pathlib import Path

from gpt2cli.evaluate import sample_log
from gpt2cli.evaluate.tasks._taskio import field, load_jsonl
from gpt2cli.evaluate.tasks.base import DataFile, EvalOptions, Task, TaskResult, mean_metric
from gpt2cli.text.tokenizer import decode, encode

TLDR = "\nTL;DR:"
NEW_TOKENS = 100
TOP_K = 2
SENTENCES = 3
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]\u201d\u2019]*\s+|\n+")


def first_sentences(text: str, count: int = SENTENCES) -> str:
    """The first ``count`` sentences of ``text``, joined by single spaces."""
    pieces = []
    position = 0
    for match in _SENTENCE_END.finditer(text):
        piece = text[position : match.start() + len(match.group(0).rstrip())].strip()
        position = match.end()
        if piece:
            pieces.append(piece)
            if len(pieces) == count:
                return " ".join(pieces)
    tail = text[position:].strip()
    if tail:
        pieces.append(tail)
    return " ".join(pieces[:count])


def prompt_for(article: str, block_size: int) -> str:
    budget = max(1, block_size - NEW_TOKENS - len(encode(TLDR)))
    ids = encode(article.strip())
    if len(ids) > budget:
        article = decode(ids[:budget])
    return article.strip() + TLDR


def load(path: Path, limit: int | None = None) -> list[tuple[str, str]]:
    def parse(line: int, obj: dict) -> tuple[str, str]:
        return field(path, line, obj, "article", str), field(path, line, obj, "highlights", str)

    return load_jsonl(path, limit, parse, "no articles in the file")


class CnnDailyMail(Task):
    name = "cnndm"
    version = 1.0
    description = "CNN/Daily Mail test: summarise with 'TL;DR:', ROUGE-1/2/L"
    paper_metric = "rouge_avg"
    data_files = (
        DataFile(
            name="cnndm_test.jsonl",
            url=None,
            sha256=None,  # an export, not a fixed published file
            source="Hugging Face dataset cnn_dailymail 3.0.0, split test, exported with "
            ".to_json() (fields article, highlights; 11,490 lines)",
        ),
    )

    def evaluate(self, lm, data: Path, options: EvalOptions) -> TaskResult:
        from rouge_score import rouge_scorer

        examples = load(data, options.limit)
        block_size = int(getattr(lm, "block_size", 1024))
        prompts = [prompt_for(article, block_size) for article, _ in examples]
        outputs = lm.generate(
            prompts,
            max_tokens=NEW_TOKENS,
            until=[],
            greedy=False,
            top_k=TOP_K,
            seed=options.seed,
        )
        scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
        per_metric: dict[str, list[float]] = {"rouge1": [], "rouge2": [], "rougeL": []}
        averages: list[float] = []
        samples: list[dict] = []
        for doc_id, ((_, highlights), output) in enumerate(zip(examples, outputs)):
            summary = first_sentences(output)
            scores = scorer.score(highlights, summary)
            for key, values in per_metric.items():
                values.append(scores[key].fmeasure)
            averages.append(sum(scores[k].fmeasure for k in per_metric) / len(per_metric))
            samples.append(
                sample_log.generation(
                    doc_id,
                    prompts[doc_id],
                    output,
                    highlights,
                    summary,
                    **{key: values[-1] for key, values in per_metric.items()},
                    rouge_avg=averages[-1],
                )
            )
        metrics = {key: mean_metric(values) for key, values in per_metric.items()}
        metrics["rouge_avg"] = mean_metric(averages)
        return TaskResult(metrics=metrics, n=len(examples), samples=samples)


TASKS = [CnnDailyMail()]
