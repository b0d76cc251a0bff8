"""Peak memory of CPU training with and without activation recompute (`gpt2 train --recompute`).

Each mode runs in a child process of its own: build the model (default 12 layers x 768, the
124M shape, T=512, batch 4, fp32), take N AdamW steps, report the peak RSS (``ru_maxrss``)
and the RSS once the model is built. The two runs differ only in the activations kept.

    python bench/bench_memory.py [--layers 12] [--width 768] [--seq 512] [--batch 4] [--steps 2]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def child(args: argparse.Namespace) -> None:
    import torch

    from gpt2cli.model.gpt import GPT, GPTConfig
    from gpt2cli.train import optimizer

    torch.manual_seed(0)
    heads = args.width // 64
    config = GPTConfig(n_layer=args.layers, n_head=heads, n_embd=args.width, block_size=args.seq)
    model = GPT(config.with_padding(64)).train()
    model.recompute = args.recompute
    opt = optimizer.make_adamw(model, 6e-4, 0.1, (0.9, 0.95), 1e-8, fused=False)
    built = peak_rss_mib()
    tokens = torch.randint(0, config.vocab_size, (args.batch, args.seq + 1))
    x, y = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    start = time.perf_counter()
    for _ in range(args.steps):
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
    seconds = (time.perf_counter() - start) / args.steps
    result = {"built_mib": built, "peak_mib": peak_rss_mib(), "step_s": seconds}
    print(json.dumps(result | {"loss": loss.item()}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--width", type=int, default=768)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2, help="training steps per mode")
    parser.add_argument("--recompute", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args)
        return
    print(
        f"shape: {args.layers} layers, {args.width} wide, T={args.seq}, batch {args.batch}, "
        f"fp32, AdamW, {args.steps} steps per mode, one child process each"
    )
    shape = ["--layers", str(args.layers), "--width", str(args.width), "--seq", str(args.seq)]
    shape += ["--batch", str(args.batch), "--steps", str(args.steps)]
    results = {}
    for name, flag in (("without", []), ("--recompute", ["--recompute"])):
        command = [sys.executable, __file__, "--child", *shape, *flag]
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
        r = results[name] = json.loads(out.strip().splitlines()[-1])
        print(
            f"{name:12} peak RSS {r['peak_mib']:8,.0f} MiB  (model built: "
            f"{r['built_mib']:,.0f} MiB)  {r['step_s']:.1f} s/step  loss {r['loss']:.4f}"
        )
    a, b = results["without"], results["--recompute"]
    print(
        f"recompute: peak {b['peak_mib'] / a['peak_mib']:.2f}x "
        f"({a['peak_mib'] - b['peak_mib']:,.0f} MiB less), step time "
        f"{b['step_s'] / a['step_s']:.2f}x"
    )


if __name__ == "__main__":
    main()
