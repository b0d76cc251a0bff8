"""Sampling speed on a CPU, precision for precision: `gpt2 sample`'s generation against
llama.cpp (through llama-cpp-python, when it imports) on the GGUF files `gpt2 export` writes.

Same random weights everywhere (the 124M shape by default), greedy, one prompt, N new tokens,
the same number of threads; runs of the two interleaved. Prints tokens/s per precision for both
(median and best of the repeats), their ratio, and the share of the memory bandwidth each
reaches: the bytes of weights a decoding step reads x tokens/s, over the bandwidth of a large
tensor copy measured in the same run. Optionally also against transformers' ``generate``.

    python bench/bench_sample.py                          # 124m, 256 tokens, 2 threads
    python bench/bench_sample.py --tokens 64 --repeats 5 --precisions fp32,int8
    pip install ../shared/wheels/llama_cpp_python-*.whl   # llama.cpp: bench-only, optional
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

# As the `gpt2` command sets it (before torch allocates).
os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpt2cli.infer import generation  # noqa: E402
from gpt2cli.model import compiled_kernels, hf, resolve  # noqa: E402
from gpt2cli.model.compiled_kernels import StreamedWeight  # noqa: E402
from gpt2cli.model.export import ExportOptions, export  # noqa: E402
from gpt2cli.model.gpt import GPT, config_for_size  # noqa: E402
from gpt2cli.model.packed_weights import Fp16Weight, Int8Weight  # noqa: E402
from gpt2cli.text.tokenizer import encode  # noqa: E402

PROMPT = "The meaning of life is a question that has been asked by many people over the years"
# Our --dtype -> the GGUF type llama.cpp runs at that precision (bf16 is held against fp32's).
PAIRS = {"fp32": "f32", "fp16": "f16", "bf16": "f32", "int8": "q8_0"}


def copy_bandwidth(megabytes: int = 512, repeats: int = 5) -> float:
    """GB/s of a large tensor copy (bytes read + bytes written), best of ``repeats``."""
    source = torch.ones(megabytes * 2**20 // 4)
    target = torch.empty_like(source)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        target.copy_(source)
        best = min(best, time.perf_counter() - start)
    return 2 * source.numel() * 4 / best / 1e9


def step_bytes(model: GPT) -> int:
    """Bytes of weights one decoding step reads: every linear layer in its format, the output
    layer included (the embeddings read one row each: left out)."""
    total = 0
    for module in model.modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        packed = getattr(module, "packed", None)
        if isinstance(packed, StreamedWeight):  # its values, and an fp32 scale per row (int8)
            total += packed.values.numel() * packed.values.element_size()
            total += 0 if packed.scale is None else packed.scale.numel() * 4
        elif isinstance(packed, Fp16Weight):
            total += module.in_features * module.out_features * 2
        elif isinstance(packed, Int8Weight):  # int8 values and an fp32 scale per row
            total += module.in_features * module.out_features + module.out_features * 4
        else:
            total += module.weight.numel() * module.weight.element_size()
        if module.bias is not None:
            total += module.bias.numel() * module.bias.element_size()
    return total


def gguf_step_bytes(path: Path) -> int:
    """Bytes of the tensors a llama.cpp step reads (all but the embeddings' rows; the token
    embedding counted once more: it is the output layer)."""
    import gguf

    reader = gguf.GGUFReader(path)
    total = 0
    for tensor in reader.tensors:
        if tensor.name != "position_embd.weight":
            total += int(tensor.n_bytes)
    return total


def time_ours(model: GPT, prompt: list[int], tokens: int) -> float:
    """Tokens/s of greedy generation, as `gpt2 sample --greedy --ignore-eot` runs it."""
    start = time.perf_counter()
    generation.generate(
        model, [prompt], generation.SamplingSettings(tokens, greedy=True, ignore_eot=True)
    )
    return tokens / (time.perf_counter() - start)


def time_llama(llm, prompt: list[int], tokens: int) -> float:  # noqa: ANN001 - optional import
    """Tokens/s of llama.cpp's greedy generation (prompt evaluation included, as ours)."""
    llm.reset()
    start = time.perf_counter()
    count = 0
    for _ in llm.generate(prompt, temp=0.0, top_k=1, repeat_penalty=1.0, reset=True):
        count += 1
        if count == tokens:
            break
    return tokens / (time.perf_counter() - start)


def rate(samples: list[float]) -> str:
    return f"{statistics.median(samples):7.1f} ({max(samples):6.1f})"


def main() -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench_sample."))
    try:
        run(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def run(tmp: Path) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="124m")
    parser.add_argument("--tokens", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--precisions", default="fp32,fp16,bf16,int8")
    parser.add_argument("--transformers", action="store_true", help="also transformers, fp32")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    try:
        import llama_cpp
    except ImportError:
        llama_cpp = None
        print("llama_cpp does not import: gpt2cli alone (pip install llama-cpp-python)")

    torch.manual_seed(0)
    prompt = encode(PROMPT)
    model_dir = tmp / "model"
    hf.save_pretrained(GPT(config_for_size(args.size)), model_dir)
    bandwidth = copy_bandwidth()
    print(
        f"{args.size}, {len(prompt)}-token prompt, {args.tokens} new tokens, greedy, "
        f"{args.threads} threads, torch {torch.__version__}, "
        f"{'compiled' if compiled_kernels.available() else 'torch'} kernels"
        + (f", llama-cpp-python {llama_cpp.__version__}" if llama_cpp else "")
        + f"; copy bandwidth {bandwidth:.1f} GB/s"
    )
    print(
        f"{'precision':10s} {'gpt2 tok/s med (best)':>22s} {'llama.cpp':>10s} "
        f"{'tok/s med (best)':>17s} {'ratio':>6s} {'gpt2 BW':>8s} {'llama BW':>9s}"
    )
    for precision in args.precisions.split(","):
        loaded = resolve.load_model(model_dir, device="cpu", dtype=precision)
        ours = loaded.model
        generation.prepare_model(ours, 1)  # as `gpt2 sample` does for one prompt
        ours_bytes = step_bytes(ours)
        warm_up = generation.SamplingSettings(4, greedy=True, ignore_eot=True)
        generation.generate(ours, [prompt], warm_up)
        llm = None
        kind = PAIRS[precision]
        if llama_cpp is not None:
            gguf_path = tmp / f"model-{kind}.gguf"
            if not gguf_path.exists():
                export(ExportOptions(str(model_dir), gguf_path, "gguf", kind))
            llm = llama_cpp.Llama(
                str(gguf_path),
                n_ctx=len(prompt) + args.tokens + 8,
                n_threads=args.threads,
                n_threads_batch=args.threads,
                verbose=False,
            )
            theirs_bytes = gguf_step_bytes(gguf_path)

        if llm is not None:
            time_llama(llm, prompt, 4)  # warm up
        mine: list[float] = []
        theirs: list[float] = []
        for _ in range(args.repeats):
            mine.append(time_ours(ours, prompt, args.tokens))
            if llm is not None:
                theirs.append(time_llama(llm, prompt, args.tokens))
        ours_share = statistics.median(mine) * ours_bytes / 1e9 / bandwidth
        line = f"{precision:10s} {rate(mine):>22s}"
        if llm is not None:
            ratio = statistics.median(mine) / statistics.median(theirs)
            their_share = statistics.median(theirs) * theirs_bytes / 1e9 / bandwidth
            line += f" {kind:>10s} {rate(theirs):>17s} {ratio:6.2f} {ours_share:8.0%} "
            line += f"{their_share:9.0%}"
        else:
            line += f" {'':>10s} {'':>17s} {'':>6s} {ours_share:8.0%}"
        print(line, flush=True)
        del llm, ours, loaded
    if args.transformers:
        from transformers import GPT2LMHeadModel

        reference = GPT2LMHeadModel.from_pretrained(model_dir).eval()
        x = torch.tensor([prompt])
        rates = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            with torch.inference_mode():
                reference.generate(
                    x,
                    attention_mask=torch.ones_like(x),
                    do_sample=False,
                    max_new_tokens=args.tokens,
                    min_new_tokens=args.tokens,
                    pad_token_id=50256,
                )
            rates.append(args.tokens / (time.perf_counter() - start))
        print(f"{'hf fp32':10s} {rate(rates):>22s}  (transformers generate, KV cache)")


if __name__ == "__main__":
    main()
