"""What the evaluation tests (and bench/bench_eval.py) share: a tiny random Hugging Face GPT-2,
the LAMBADA and WikiText-2 files where `gpt2 eval` looks, lm-evaluation-harness's
``lambada_openai`` as a task YAML over a local file."""

from __future__ import annotations

import json
from pathlib import Path


def save_tiny_model(directory: Path, block: int = 32) -> Path:
    """A random 2-layer Hugging Face GPT-2 (seed 0, ``block`` positions) saved in ``directory``."""
    import torch
    import transformers

    torch.manual_seed(0)
    # Default initialisation: the residual stream is dominated by the token embedding, so the
    # tied head's argmax repeats the last token, and "... dog dog" targets are hits.
    config = transformers.GPT2Config(
        n_layer=2, n_head=2, n_embd=64, n_positions=block, vocab_size=50257
    )
    transformers.GPT2LMHeadModel(config).eval().save_pretrained(directory)
    return directory


def write_task_files(root: Path, lambada_lines: list[str], wiki_raw: str) -> Path:
    """The lambada and wikitext2 data files under ``root``, where `gpt2 eval` looks."""
    (root / "lambada_test.jsonl").write_text(
        "".join(json.dumps({"text": line}) + "\n" for line in lambada_lines)
    )
    (root / "wikitext-2-raw").mkdir()
    (root / "wikitext-2-raw" / "wiki.test.raw").write_text(wiki_raw)
    return root


_LAMBADA_YAML = """task: {task}
dataset_path: json
dataset_kwargs:
  data_files:
    test: {data}
output_type: loglikelihood
test_split: test
doc_to_text: "{{{{text.split(' ')[:-1]|join(' ')}}}}"
doc_to_target: "{{{{' '+text.split(' ')[-1]}}}}"
metric_list:
  - metric: perplexity
    aggregation: perplexity
    higher_is_better: false
  - metric: acc
    aggregation: mean
    higher_is_better: true
metadata:
  version: 1.0
"""


def lambada_task_yaml(task: str, data: Path) -> str:
    """lm-eval's ``lambada_openai`` (target: the last space-separated word with its space, acc
    and perplexity) named ``task``, reading the JSON Lines file ``data``."""
    return _LAMBADA_YAML.format(task=task, data=data)
