"""`gpt2 eval lambada` against lm-evaluation-harness's `hf` backend, same model, same file.

    GPT2CLI_LMEVAL_PYTHON=/path/to/venv-lmeval/bin/python \\
    python bench/bench_eval.py [--examples 24] [--size 124m] [--batch-size 8]
                               [--lmeval-batch-size 8] [--device cpu] [--threads N]

Writes a LAMBADA-format file of synthetic passages (about 80 tokens each, like the real
ones), a random-weight GPT-2 of the given shape in HF layout with the GPT-2 tokenizer files
(made from the bundled BPE ranks), then times the evaluation itself -- model already loaded,
imports done -- in both tools: ours is ``Lambada().evaluate`` through ``LanguageModel``;
lm-eval's is ``simple_evaluate`` on an ``HFLM`` with a ``lambada_openai``-identical task YAML
pointing at the same file (``bootstrap_iters=0``). lm-eval runs in its own interpreter
(``GPT2CLI_LMEVAL_PYTHON``, or this one when it can import lm_eval). Prints examples per
second, the ratio (goal >= 1.5) and both tools' acc/perplexity (they must agree).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gpt2cli.evaluate.language_model import LanguageModel
from gpt2cli.evaluate.tasks.base import EvalOptions
from gpt2cli.evaluate.tasks.lambada import Lambada
from gpt2cli.model import hf
from gpt2cli.model.gpt import GPT, config_for_size

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _eval_files import lambada_task_yaml  # noqa: E402

WORDS = (
    "the a of and to in was he she it that his her with for on as had at by but not "
    "they from said were all one there would when what so up out about into could "
    "time man little old see them more like then than now house door hand eyes back "
    "looked asked thought knew long way came went night room told face voice day"
)

LMEVAL_SCRIPT = r"""
import json, sys, time
import torch
from lm_eval import simple_evaluate
from lm_eval.models.huggingface import HFLM
from lm_eval.tasks import TaskManager
model_dir, task_dir, batch, device, threads = sys.argv[1:6]
if int(threads):
    torch.set_num_threads(int(threads))
lm = HFLM(pretrained=model_dir, batch_size=int(batch), device=device, dtype="float32")
manager = TaskManager(include_path=task_dir)
start = time.perf_counter()
out = simple_evaluate(model=lm, tasks=["lambada_bench"], task_manager=manager,
                      bootstrap_iters=0, log_samples=False)
seconds = time.perf_counter() - start
r = out["results"]["lambada_bench"]
print(json.dumps({"seconds": seconds, "acc": r["acc,none"], "perplexity": r["perplexity,none"]}))
"""


def lm_eval_python() -> str | None:
    named = os.environ.get("GPT2CLI_LMEVAL_PYTHON")
    if named:
        return named
    return sys.executable if importlib.util.find_spec("lm_eval") else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=24)
    parser.add_argument("--size", default="124m")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lmeval-batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    python = lm_eval_python()
    rng = np.random.default_rng(0)
    words = WORDS.split()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data = root / "lambada_test.jsonl"
        with open(data, "w") as handle:
            for _ in range(args.examples):
                n = int(rng.integers(55, 85))
                text = " ".join(rng.choice(words, n)).capitalize() + " " + str(rng.choice(words))
                handle.write(json.dumps({"text": text}) + "\n")
        torch.manual_seed(0)
        model_dir = root / "model"
        hf.save_pretrained(GPT(config_for_size(args.size)), model_dir)
        task_dir = root / "tasks"
        task_dir.mkdir()
        (task_dir / "lambada_bench.yaml").write_text(lambada_task_yaml("lambada_bench", data))

        lm = LanguageModel.load(
            str(model_dir), device=args.device, dtype="fp32", batch_size=args.batch_size
        )
        task = Lambada()
        task.evaluate(lm, data, EvalOptions(limit=2))  # warm-up
        start = time.perf_counter()
        result = task.evaluate(lm, data, EvalOptions(batch_size=args.batch_size))
        ours = time.perf_counter() - start
        print(
            f"model {args.size} (random weights), device {args.device}, threads "
            f"{torch.get_num_threads()}, {args.examples} LAMBADA-format examples"
        )
        print(
            f"gpt2cli  (batch {args.batch_size:>2}): {args.examples / ours:8.2f} examples/s "
            f"({ours:.2f} s)  acc {result.metrics['acc'].value:.4f} "
            f"ppl {result.metrics['perplexity'].value:.4f}"
        )
        if python is None:
            print("lm-evaluation-harness not available: set GPT2CLI_LMEVAL_PYTHON")
            return
        env = {
            **os.environ,
            "HF_DATASETS_OFFLINE": "1",
            "HF_HUB_OFFLINE": "1",
            "TOKENIZERS_PARALLELISM": "false",
        }
        done = subprocess.run(
            [
                python,
                "-c",
                LMEVAL_SCRIPT,
                str(model_dir),
                str(task_dir),
                str(args.lmeval_batch_size),
                args.device,
                str(args.threads),
            ],
            capture_output=True,
            text=True,
            env=env,
            check=False,
        )
        if done.returncode != 0:
            print(done.stderr[-3000:])
            raise SystemExit("lm-eval failed")
        theirs = json.loads(done.stdout.strip().splitlines()[-1])
        print(
            f"lm-eval  (batch {args.lmeval_batch_size:>2}): "
            f"{args.examples / theirs['seconds']:8.2f} examples/s ({theirs['seconds']:.2f} s)"
            f"  acc {theirs['acc']:.4f} ppl {theirs['perplexity']:.4f}"
        )
        print(f"ratio (ours / lm-eval): {theirs['seconds'] / ours:.2f}x (goal >= 1.5)")


if __name__ == "__main__":
    main()
