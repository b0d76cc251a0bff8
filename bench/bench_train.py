"""CPU training throughput: our GPT + AdamW step vs transformers' GPT2LMHeadModel, same process.

Same shape (default 4 layers, 4 heads, 256 wide, T=256), batch, optimizer (AdamW 0.9/0.95,
decay 0.1 on matrices, clipping at 1.0) and fp32. Rounds alternate between the two models so that
machine load hits both alike; the figure is the median over rounds. Goal: ratio >= 1.2.

    python bench/bench_train.py [--layers 4] [--width 256] [--seq 256] [--batch 8] [--rounds 5]
    python bench/bench_train.py --compile   # also torch.compile (inductor) vs eager, our model
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from gpt2cli.model.gpt import GPT, GPTConfig
from gpt2cli.train import optimizer


def training_step(model: torch.nn.Module, loss_of):
    """One AdamW step (the same optimizer and clipping for both models) on ``loss_of(x, y)``."""
    opt = optimizer.make_adamw(model, 6e-4, 0.1, (0.9, 0.95), 1e-8, fused=False)

    def step(x: torch.Tensor, y: torch.Tensor) -> float:
        loss = loss_of(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    return step


def ours(args: argparse.Namespace, compiled: bool = False):
    config = GPTConfig(
        n_layer=args.layers, n_head=args.heads, n_embd=args.width, block_size=args.seq
    )
    if args.pad_vocab > 1:
        config = config.with_padding(args.pad_vocab)
    model = GPT(config).train()
    forward = torch.compile(model) if compiled else model
    return training_step(model, lambda x, y: forward(x, y)[1])


def theirs(args: argparse.Namespace):
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(
        n_layer=args.layers,
        n_head=args.heads,
        n_embd=args.width,
        n_positions=args.seq,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
    )
    model = GPT2LMHeadModel(config).train()
    # labels=x: the model shifts inside, the usual HF training call
    return training_step(model, lambda x, y: model(input_ids=x, labels=x).loss)


def timed(step, x: torch.Tensor, y: torch.Tensor, steps: int) -> float:
    start = time.perf_counter()
    for _ in range(steps):
        step(x, y)
    return x.numel() * steps / (time.perf_counter() - start)


def alternate(a, b, x: torch.Tensor, y: torch.Tensor, args: argparse.Namespace):
    """Tokens/s of steps ``a`` and ``b`` over --rounds rounds, taken in turn: machine load
    hits both alike."""
    rounds_a, rounds_b = [], []
    for _ in range(args.rounds):
        rounds_a.append(timed(a, x, y, args.steps))
        rounds_b.append(timed(b, x, y, args.steps))
    return rounds_a, rounds_b


def speed_line(label: str, rounds: list[float], note: str = "") -> str:
    """The median tokens/s of ``rounds`` after ``label``, then every round (and ``note``)."""
    each = ", ".join(f"{v:,.0f}" for v in rounds)
    return f"{label:12s} {statistics.median(rounds):10,.0f} tokens/s  (rounds: {each}{note})"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2, help="steps per round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pad-vocab", type=int, default=64, help="as `gpt2 train` (1: none)")
    parser.add_argument(
        "--compile",
        action="store_true",
        help="also time our model under torch.compile (gpt2 train --compile) against eager",
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    tokens = torch.randint(0, 50257, (args.batch, args.seq + 1))
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    a, b = ours(args), theirs(args)
    a(x, y), b(x, y)  # warm-up
    mine, hf = alternate(a, b, x, y, args)
    m, h = statistics.median(mine), statistics.median(hf)
    print(
        f"shape: {args.layers} layers, {args.width} wide, T={args.seq}, batch {args.batch}, "
        f"fp32, {torch.get_num_threads()} threads, torch {torch.__version__}"
    )
    print(speed_line("gpt2cli", mine))
    print(speed_line("transformers", hf))
    print(f"ratio        {m / h:10.2f}x  (goal >= 1.2x)")
    if args.compile:
        c = ours(args, compiled=True)
        start = time.perf_counter()
        c(x, y)  # compiles
        compile_s = time.perf_counter() - start
        rounds, eager = alternate(c, a, x, y, args)
        m, e = statistics.median(rounds), statistics.median(eager)
        note = f"; first step with compilation {compile_s:.0f} s"
        print(speed_line("compiled", rounds, note))
        print(f"compiled / eager gpt2cli {m / e:.2f}x  (eager rounds: {e:,.0f} tokens/s median)")


if __name__ == "__main__":
    main()
