"""Sampling speed: gpt2cli's KV-cache generation against transformers' ``generate`` (KV cache).

Same random weights in both (the 124M shape by default), greedy, N new tokens, batch 1 and 8,
on CPU; prints tokens/s and the ratio, measured in the same process, runs interleaved.

    python bench/bench_sample.py                 # 124m, 256 tokens, batches 1 and 8
    python bench/bench_sample.py --tokens 64 --threads 2 --repeats 3
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

# As the `gpt2` command sets it (before torch allocates), for both models' weights alike.
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpt2cli.infer import generation  # noqa: E402
from gpt2cli.model import hf  # noqa: E402
from gpt2cli.model.gpt import GPT, config_for_size  # noqa: E402
from gpt2cli.text.tokenizer import EOT, encode  # noqa: E402

PROMPT = "The meaning of life is a question that has been asked by many people over the years"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="124m")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--batches", default="1,8")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    from transformers import GPT2LMHeadModel

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        hf.save_pretrained(GPT(config_for_size(args.size)), tmp)
        ours = hf.load_pretrained(tmp).eval()
        theirs = GPT2LMHeadModel.from_pretrained(tmp).eval()
    prompt = encode(PROMPT)
    print(
        f"{args.size}, {len(prompt)}-token prompt, {args.tokens} new tokens, greedy, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}"
    )

    def run_ours(batch: int) -> list[list[int]]:
        out = generation.generate(ours, [prompt] * batch, args.tokens, greedy=True, ignore_eot=True)
        return [c.ids for c in out]

    def run_theirs(batch: int) -> list[list[int]]:
        x = torch.tensor([prompt] * batch)
        with torch.inference_mode():
            out = theirs.generate(
                x,
                attention_mask=torch.ones_like(x),
                do_sample=False,
                max_new_tokens=args.tokens,
                min_new_tokens=args.tokens,
                pad_token_id=EOT,
                use_cache=True,
            )
        return out[:, len(prompt) :].tolist()

    # Warm up both (allocator, kernels) on a few tokens.
    generation.generate(ours, [prompt], 4, greedy=True)
    with torch.inference_mode():
        theirs.generate(torch.tensor([prompt]), do_sample=False, max_new_tokens=4, pad_token_id=EOT)
    for batch in [int(b) for b in args.batches.split(",")]:
        generation.prepare_model(ours, batch)  # as `gpt2 sample` does after loading
        times: dict[str, list[float]] = {"ours": [], "transformers": []}
        outputs = {}
        for _ in range(args.repeats):
            for name, fn in (("ours", run_ours), ("transformers", run_theirs)):
                start = time.perf_counter()
                outputs[name] = fn(batch)
                times[name].append(time.perf_counter() - start)
        same = outputs["ours"] == outputs["transformers"]
        rate = {name: batch * args.tokens / statistics.median(t) for name, t in times.items()}
        ratio = rate["ours"] / rate["transformers"]
        print(
            f"batch {batch}: ours {rate['ours']:8.1f} tok/s   transformers "
            f"{rate['transformers']:8.1f} tok/s   ratio {ratio:.2f}x   same tokens: {same}"
        )


if __name__ == "__main__":
    main()
