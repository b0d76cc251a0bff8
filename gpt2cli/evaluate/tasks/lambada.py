"""LAMBADA (OpenAI's test file): predict the last word of a passage.

As lm-evaluation-harness's ``lambada_openai``: the context is the text up to the last space,
the target the last space-separated word *with* its leading space; ``acc`` is 1 when every
target token is the model's argmax, ``perplexity`` is exp(−mean over examples of the
target's summed log-probability). Standard errors: ``acc`` sample std / sqrt(n) (as lm-eval);
``perplexity`` by the delta method, ppl × stderr of the mean log-likelihood (lm-eval
bootstraps it instead).

``--stop-word-filter`` adds ``acc_stop_word_filter``, an approximation of the GPT-2 paper's
variant: at the first target token, tokens that spell an English stop word (NLTK's list,
case-insensitive, with or without a leading space) never count as the argmax.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path

from gpt2cli.evaluate import sample_log
from gpt2cli.evaluate.language_model import LanguageModel
from gpt2cli.evaluate.tasks._taskio import jsonl_strings
from gpt2cli.evaluate.tasks.base import (
    DataFile,
    EvalOptions,
    Metric,
    Task,
    TaskResult,
    data_error,
    mean_stderr,
)

STOP_WORDS = frozenset(
    """
i me my myself we our ours ourselves you you're you've you'll you'd your yours yourself
yourselves he him his himself she she's her hers herself it it's its itself they them their
theirs themselves what which who whom this that that'll these those am is are was were be been
being have has had having do does did doing a an the and but if or because as until while of
at by for with about against between into through during before after above below to from up
down in out on off over under again further then once here there when where why how all any
both each few more most other some such no nor not only own same so than too very s t can will
just don don't should should've now d ll m o re ve y ain aren aren't couldn couldn't didn
didn't doesn doesn't hadn hadn't hasn hasn't haven haven't isn isn't ma mightn mightn't mustn
mustn't needn needn't shan shan't shouldn shouldn't wasn wasn't weren weren't won won't
wouldn wouldn't
""".split()
)

LAMBADA_FILE = DataFile(
    name="lambada_test.jsonl",
    url="https://openaipublic.blob.core.windows.net/gpt-2/data/lambada_test.jsonl",
    sha256="4aa8d02cd17c719165fc8a7887fddd641f43fcafa4b1c806ca8abc31fabdb226",
    source='OpenAI\'s LAMBADA test set (5,153 lines of {"text": ...}), '
    "https://openaipublic.blob.core.windows.net/gpt-2/data/lambada_test.jsonl",
)


@lru_cache(maxsize=1)
def stop_word_token_ids() -> tuple[int, ...]:
    from gpt2cli.text.tokenizer import get_encoding

    encoding = get_encoding()
    ids = set()
    for word in STOP_WORDS:
        for form in {word, word.capitalize(), word.upper()}:
            for text in (form, " " + form):
                tokens = encoding.encode_ordinary(text)
                if len(tokens) == 1:
                    ids.add(tokens[0])
    return tuple(sorted(ids))


def split_example(text: str) -> tuple[str, str]:
    """(context, target): the target is the last space-separated word with its space."""
    context, _, word = text.rpartition(" ")
    return context, " " + word


def checked_example(data: Path, line: int, text: str) -> tuple[str, str]:
    """``split_example`` of a passage that has both a context and a target word, else a data
    error naming the line (such a passage would score as a free hit or a free miss)."""
    context, target = split_example(text)
    if not context.strip() or not target.strip():
        what = "an empty passage" if not text.strip() else f"one word only ({text.strip()!r})"
        raise data_error(data, line, f"{what}: no context and last word to predict")
    return context, target


class Lambada(Task):
    name = "lambada"
    version = 1.0
    description = "LAMBADA (OpenAI test file): last-word accuracy and target perplexity"
    paper_metric = "acc"
    data_files = (LAMBADA_FILE,)

    def evaluate(self, lm: LanguageModel, data: Path, options: EvalOptions) -> TaskResult:
        examples = jsonl_strings(data, "text")
        total = len(examples)
        if options.limit is not None:
            examples = examples[: options.limit]
        requests = [checked_example(data, line, text) for line, text in examples]
        if options.stop_word_filter:
            both = lm.loglikelihood_filtered(requests, stop_word_token_ids())
            results = [(ll, greedy) for ll, greedy, _ in both]
        else:
            results = lm.loglikelihood(requests)
        lls = [ll for ll, _ in results]
        hits = [1.0 if greedy else 0.0 for _, greedy in results]
        mean_ll = math.fsum(lls) / len(lls)
        ppl = math.exp(-mean_ll)
        ll_err = mean_stderr(lls)
        metrics = {
            "acc": Metric(math.fsum(hits) / len(hits), mean_stderr(hits), True),
            "perplexity": Metric(ppl, ppl * ll_err if ll_err is not None else None, False),
        }
        if options.stop_word_filter:
            hits_sw = [1.0 if filtered else 0.0 for _, _, filtered in both]
            metrics["acc_stop_word_filter"] = Metric(
                math.fsum(hits_sw) / len(hits_sw), mean_stderr(hits_sw), True
            )
        samples = [
            sample_log.choice(
                doc_id, [request], [result], request[1], result[1], acc=hit, perplexity=result[0]
            )
            for doc_id, (request, result, hit) in enumerate(zip(requests, results, hits))
        ]
        if options.stop_word_filter:
            for sample, hit_sw in zip(samples, hits_sw):
                sample["acc_stop_word_filter"] = hit_sw
        return TaskResult(
            metrics,
            n=len(requests),
            extra={"original": total, "lm_eval_task": "lambada_openai"},
            samples=samples,
        )


TASKS = [Lambada()]
