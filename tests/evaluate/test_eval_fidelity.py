"""Fidelity: `gpt2 eval lambada` and `wikitext2` against lm-evaluation-harness 0.4.13.

Two layers:

1. Always: lm-eval's ``lambada_openai`` and ``wikitext`` definitions, written out here on a
   plain ``transformers.GPT2LMHeadModel`` (its own forward, its own tokenizer-free id handling,
   lm-eval's rolling-window algorithm), against our tasks on the same weights.
2. When lm-evaluation-harness is available -- importable here, or a Python that has it named in
   ``GPT2CLI_LMEVAL_PYTHON`` (it needs its own venv: ``pip install torch==2.13.0
   "lm-eval[hf]==0.4.13"``) -- run ``lm_eval --model hf`` offline with task YAMLs pointing at
   local JSON files, and compare to 1e-4 (relative).
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from _eval_files import lambada_task_yaml, save_tiny_model, write_task_files  # tests/ on sys.path
from _processes import run_module

from gpt2cli.evaluate import tasks
from gpt2cli.evaluate.language_model import LanguageModel
from gpt2cli.evaluate.tasks.base import EvalOptions
from gpt2cli.evaluate.tasks.detokenize import wikitext_detokenizer
from gpt2cli.evaluate.tasks.wikitext import split_articles
from gpt2cli.text.tokenizer import EOT, encode

transformers = pytest.importorskip("transformers")
torch.set_num_threads(1)
BLOCK = 32
TOLERANCE = 1e-4

LAMBADA_LINES = [
    "The cat sat on the mat and looked at the dog dog",
    "When she came home, she found her keys on the table",
    "He said hello to everyone in the room before leaving leaving",
    "\u201cDon't go,\u201d she whispered, but he was already at the door door",
    "She smiled and said nothing at all",
    "A  double  space before the end end",
    "Numbers like 1,000 and 3.14 are tokenized in odd ways ways",
]
ARTICLE = (
    " = {title} = \n \n {title} is an English film , television and theatre actor . He had a "
    "guest @-@ starring role on the television series The Bill in 2000 . This was followed by "
    "a starring role in the play Herons written by Simon Stephens , which was performed in "
    "2001 at the Royal Court Theatre .\n \n = = Career = = \n \n In 2006 , {title} starred "
    "alongside Whishaw in the play Citizenship written by Mark Ravenhill . He appeared on a "
    "2006 episode of the television series , Doctors , followed by a role in the 2007 theatre "
    "production of How to Curse directed by Josie Rourke ( born 1976 ) . \n \n"
)
WIKI_RAW = " \n" + "".join(ARTICLE.format(title=t) for t in ("Robert Boulter", "Du Fu", "Ise"))


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return save_tiny_model(tmp_path_factory.mktemp("fidelity") / "tiny")


@pytest.fixture(scope="module")
def reference(model_dir: Path):
    return transformers.GPT2LMHeadModel.from_pretrained(model_dir).eval()


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_task_files(tmp_path_factory.mktemp("fidelity-data"), LAMBADA_LINES, WIKI_RAW)
    (root / "wikitext_pages.jsonl").write_text(
        "".join(json.dumps({"page": page}) + "\n" for page in split_articles(WIKI_RAW))
    )
    return root


def ours(model_dir: Path, files: Path) -> dict[str, float]:
    lm = LanguageModel.load(str(model_dir), device="cpu", batch_size=3)
    lambada = tasks.get_task("lambada").evaluate(lm, files / "lambada_test.jsonl", EvalOptions())
    wiki = tasks.get_task("wikitext2").evaluate(
        lm, files / "wikitext-2-raw" / "wiki.test.raw", EvalOptions()
    )
    return {
        "acc": lambada.metrics["acc"].value,
        "acc_stderr": lambada.metrics["acc"].stderr,
        "perplexity": lambada.metrics["perplexity"].value,
        "word_perplexity": wiki.metrics["word_perplexity"].value,
        "byte_perplexity": wiki.metrics["byte_perplexity"].value,
        "bits_per_byte": wiki.metrics["bits_per_byte"].value,
    }


# ---------------------------------------------------------------- lm-eval's rules, written out


def _continuation_logprobs(model, context: list[int], continuation: list[int]):
    whole = (context + continuation)[-(BLOCK + 1) :]
    inputs = whole[:-1]
    with torch.no_grad():
        logits = model(torch.tensor([inputs])).logits[0]
    logprobs = torch.log_softmax(logits.float(), dim=-1)[-len(continuation) :]
    targets = torch.tensor(continuation)
    ll = float(logprobs[torch.arange(len(continuation)), targets].sum())
    greedy = bool((logprobs.argmax(dim=-1) == targets).all())
    return ll, greedy


def lm_eval_lambada(model, lines: list[str]) -> tuple[float, float]:
    lls, hits = [], []
    for text in lines:
        context = " ".join(text.split(" ")[:-1])  # doc_to_text
        target = " " + text.split(" ")[-1]  # doc_to_target
        if context:
            whole = encode(context + target)
            ctx = encode(context)
            cont = whole[len(ctx) :]
        else:
            ctx, cont = [EOT], encode(target)
        ll, greedy = _continuation_logprobs(model, ctx, cont)
        lls.append(ll)
        hits.append(greedy)
    return sum(hits) / len(hits), math.exp(-sum(lls) / len(lls))


def lm_eval_rolling_nll(model, tokens: list[int]) -> float:
    """get_rolling_token_windows(prefix=EOT, max_seq_len=BLOCK, context_len=1) +
    make_disjoint_window, each window scored as a loglikelihood request."""
    total = 0.0
    first = min(BLOCK, len(tokens))
    windows = [([EOT] + tokens[: first - 1], tokens[:first])]
    predicted = first
    while predicted < len(tokens):
        n = min(len(tokens) - predicted, BLOCK)
        end = predicted + n
        windows.append((tokens[end - BLOCK - 1 : end - 1], tokens[end - n : end]))
        predicted += n
    for context, continuation in windows:
        context = context[: len(context) - (len(continuation) - 1)]
        total += _continuation_logprobs(model, context, continuation)[0]
    return -total


def lm_eval_wikitext(model, pages: list[str]) -> dict[str, float]:
    nll = sum(lm_eval_rolling_nll(model, encode(wikitext_detokenizer(p))) for p in pages)
    words = sum(len(re.split(r"\s+", p)) for p in pages)
    n_bytes = sum(len(p.encode("utf-8")) for p in pages)
    return {
        "word_perplexity": math.exp(nll / words),
        "byte_perplexity": math.exp(nll / n_bytes),
        "bits_per_byte": nll / n_bytes / math.log(2),
    }


def test_against_lm_eval_rules_by_hand(model_dir: Path, reference, files: Path) -> None:
    got = ours(model_dir, files)
    acc, ppl = lm_eval_lambada(reference, LAMBADA_LINES)
    assert 0 < acc < 1
    assert got["acc"] == pytest.approx(acc, abs=1e-12)
    assert got["perplexity"] == pytest.approx(ppl, rel=TOLERANCE)
    pages = split_articles(WIKI_RAW)
    assert len(pages) == 3
    assert any(len(encode(wikitext_detokenizer(p))) > 2 * BLOCK for p in pages)  # windows roll
    expected = lm_eval_wikitext(reference, pages)
    for key, value in expected.items():
        assert got[key] == pytest.approx(value, rel=TOLERANCE), key


# ---------------------------------------------------------------- lm-evaluation-harness itself


def lm_eval_python() -> str | None:
    named = os.environ.get("GPT2CLI_LMEVAL_PYTHON")
    if named:
        return named
    if importlib.util.find_spec("lm_eval") is not None:
        return sys.executable
    return None


WIKITEXT_YAML = """task: wikitext_gpt2cli
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
output_type: loglikelihood_rolling
test_split: test
doc_to_text: ""
doc_to_target: !function preprocess_wikitext.wikitext_detokenizer
process_results: !function preprocess_wikitext.process_results
metric_list:
  - metric: word_perplexity
  - metric: byte_perplexity
  - metric: bits_per_byte
metadata:
  version: 2.0
"""


@pytest.mark.skipif(
    lm_eval_python() is None,
    reason="lm-evaluation-harness not installed (set GPT2CLI_LMEVAL_PYTHON)",
)
def test_against_lm_evaluation_harness(model_dir: Path, files: Path, tmp_path: Path) -> None:
    from gpt2cli.text.hf_tokenizer import write_tokenizer_files

    python = lm_eval_python()
    assert python is not None
    model_copy = tmp_path / "model"
    model_copy.mkdir()
    for item in model_dir.iterdir():
        (model_copy / item.name).write_bytes(item.read_bytes())
    write_tokenizer_files(model_copy)  # the bundled ranks as vocab.json + merges.txt
    task_dir = tmp_path / "tasks"
    task_dir.mkdir()
    (task_dir / "lambada_gpt2cli.yaml").write_text(
        lambada_task_yaml("lambada_gpt2cli", files / "lambada_test.jsonl")
    )
    (task_dir / "wikitext_gpt2cli.yaml").write_text(
        WIKITEXT_YAML.format(data=files / "wikitext_pages.jsonl")
    )
    preprocess = subprocess.run(
        [python, "-c", "import lm_eval.tasks.wikitext.preprocess_wikitext as m; print(m.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    (task_dir / "preprocess_wikitext.py").write_text(Path(preprocess).read_text())
    out = tmp_path / "out"
    offline = {
        "HF_DATASETS_OFFLINE": "1",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
    }
    result = run_module(
        python,
        "lm_eval",
        "--model",
        "hf",
        "--model_args",
        f"pretrained={model_copy},dtype=float32",
        "--tasks",
        "lambada_gpt2cli,wikitext_gpt2cli",
        "--include_path",
        task_dir,
        "--device",
        "cpu",
        "--batch_size",
        "4",
        "--output_path",
        out,
        env=offline,
        timeout=900,
    )
    written = sorted(out.rglob("results_*.json"))
    assert written, result.stdout[-2000:]
    theirs = json.loads(written[-1].read_text())["results"]
    got = ours(model_dir, files)
    lambada, wiki = theirs["lambada_gpt2cli"], theirs["wikitext_gpt2cli"]
    assert got["acc"] == pytest.approx(lambada["acc,none"], abs=TOLERANCE)
    assert got["acc_stderr"] == pytest.approx(lambada["acc_stderr,none"], abs=TOLERANCE)
    assert got["perplexity"] == pytest.approx(lambada["perplexity,none"], rel=TOLERANCE)
    for key in ("word_perplexity", "byte_perplexity", "bits_per_byte"):
        assert got[key] == pytest.approx(wiki[f"{key},none"], rel=TOLERANCE), key
