"""`gpt2 score`'s core against a plain transformers forward loop over the same windows.

    python bench/bench_score.py [--size 124m] [--docs 4] [--doc-tokens 1500] [--batch-size 4]
                                [--device cpu] [--threads N]

Builds a random-weight GPT-2 of the given shape, saves it in HF layout and loads the same
weights into ``transformers.GPT2LMHeadModel``. Documents of random ids are scored with
``gpt2cli.infer.scoring.score_documents`` (rolling windows of the full context, batched and sorted
by length) and, as the reference, by a loop over exactly the same windows and batches that
calls the transformers model and takes ``log_softmax`` + ``gather`` -- the plain way. Both
return the per-token log-probs; they are checked to agree. Prints scored tokens per second
and the ratio (goal: >= 1.0).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gpt2cli.infer import scoring
from gpt2cli.model import hf
from gpt2cli.model.gpt import GPT, config_for_size
from gpt2cli.text.tokenizer import EOT


def reference_scores(
    model, documents: list[list[int]], block: int, batch_size: int, device: str
) -> list[np.ndarray]:
    requests = []
    for number, doc in enumerate(documents):
        full = [EOT, *doc]
        for span in scoring.windows(len(full), 1, block):
            requests.append((number, full, span))
    requests.sort(key=lambda r: -(r[2].end - r[2].start))
    parts: list[list[tuple[int, np.ndarray]]] = [[] for _ in documents]
    with torch.inference_mode():
        for begin in range(0, len(requests), batch_size):
            chunk = requests[begin : begin + batch_size]
            width = max(r[2].end - r[2].start for r in chunk)
            batch = torch.zeros((len(chunk), width), dtype=torch.long)
            for row, (_, full, span) in enumerate(chunk):
                batch[row, : span.end - span.start] = torch.tensor(full[span.start : span.end])
            logprobs = torch.log_softmax(model(batch.to(device)).logits.float(), dim=-1)
            for row, (number, full, span) in enumerate(chunk):
                n_in = span.end - span.start
                targets = torch.tensor(
                    full[span.end - span.n_scored + 1 : span.end + 1], device=device
                )
                positions = torch.arange(n_in - span.n_scored, n_in, device=device)
                values = logprobs[row, positions, targets].double().cpu().numpy()
                parts[number].append((span.end, values))
    return [np.concatenate([v for _, v in sorted(p, key=lambda x: x[0])]) for p in parts]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="124m")
    parser.add_argument("--docs", type=int, default=4)
    parser.add_argument("--doc-tokens", type=int, default=1500)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    import transformers

    torch.manual_seed(0)
    config = config_for_size(args.size)
    ours = GPT(config).eval()
    with tempfile.TemporaryDirectory() as tmp:
        hf.save_pretrained(ours, Path(tmp) / "m")
        reference = transformers.GPT2LMHeadModel.from_pretrained(Path(tmp) / "m").eval()
    ours.to(args.device)
    reference.to(args.device)
    rng = np.random.default_rng(0)
    documents = [rng.integers(0, 50257, args.doc_tokens).tolist() for _ in range(args.docs)]
    tokens = sum(len(d) for d in documents)
    block = config.block_size
    windows = scoring.count_windows([len(d) for d in documents], block)

    def timed(fn):
        best = float("inf")
        result = None
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = fn()
            if args.device.startswith("cuda"):
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - start)
        return best, result

    # warm-up (allocator, kernels) on a short document
    scoring.score_documents(
        ours, [documents[0][:64]], block, scoring.ScoringSettings(device=args.device)
    )
    reference_scores(reference, [documents[0][:64]], block, 1, args.device)
    t_ref, ref = timed(
        lambda: reference_scores(reference, documents, block, args.batch_size, args.device)
    )
    settings = scoring.ScoringSettings(args.batch_size, device=args.device)
    t_ours, got = timed(lambda: scoring.score_documents(ours, documents, block, settings))
    worst = max(float(np.abs(a.logprobs - b).max()) for a, b in zip(got, ref))
    print(
        f"model {args.size} ({ours.num_parameters() / 1e6:.0f}M, random weights), "
        f"device {args.device}, threads {torch.get_num_threads()}, {args.docs} docs x "
        f"{args.doc_tokens} tokens = {tokens:,} tokens in {windows} windows of <= {block}, "
        f"batch {args.batch_size}"
    )
    print(f"transformers forward loop: {tokens / t_ref:10.1f} tokens/s ({t_ref:.2f} s)")
    print(f"gpt2cli scoring          : {tokens / t_ours:10.1f} tokens/s ({t_ours:.2f} s)")
    print(
        f"ratio (ours / transformers): {t_ref / t_ours:.2f}x (goal >= 1.0); "
        f"max |logprob difference| {worst:.2e}"
    )


if __name__ == "__main__":
    main()
