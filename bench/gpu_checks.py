"""The Python steps of `bench/gpu.sh`: synthetic shards, the GPU-only checks, the summary.

    python bench/gpu_checks.py shards DIR [--documents 16000]
    python bench/gpu_checks.py checks WORK [--device cuda]
    python bench/gpu_checks.py summary OUT SIZE...

``checks`` on ``--device cpu`` runs every step it can without a GPU (the tests do, so the
script cannot drift from the code it drives) and says which CUDA-only assertions it skipped.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

WARM_UP_STEPS = 3  # left out of the summary: compilation and the allocator's first steps


def make_shards(out: str, documents: int) -> None:
    """Random ids (the benchmark measures speed, not learning), 1,000 tokens a document."""
    import numpy as np

    from gpt2cli.data.pack import PackOptions, pack
    from gpt2cli.text import token_stream

    rng = np.random.default_rng(0)
    stream = out + ".tokens"
    with open(stream, "wb") as handle:
        handle.write(token_stream.HEADER)
        for _ in range(documents):
            ids = rng.integers(0, 50256, 1000, dtype=np.uint16)
            handle.write(token_stream.encode_document(ids))
    pack([stream], out, PackOptions(val_tokens=max(1, documents * 1000 // 80)))


def train_losses(run: Path) -> list[float]:
    from gpt2cli.train import metrics_log

    return [
        r["loss"] for r in metrics_log.read_metrics(run / "metrics.jsonl") if r["kind"] == "train"
    ]


def checks(work: Path, device: str) -> None:
    """bf16 autocast, TF32, fused AdamW, --micro-batch auto, resume bit for bit, torchrun DDP
    and FSDP with one process; raises at the first that fails."""
    import torch

    from gpt2cli.model.gpt import GPT, config_for_size
    from gpt2cli.train import hardware, optimizer, setup

    cuda = device == "cuda"
    skipped = []
    data = str(work / "shards")
    bf16 = cuda and torch.cuda.is_bf16_supported()
    precision = hardware.choose_precision(device, "auto", bf16)
    if cuda:
        expected = torch.bfloat16 if bf16 else torch.float16
        assert precision.autocast_dtype == expected, precision
    else:
        assert precision.autocast_dtype is None, precision
        skipped.append("bf16 autocast")
    model = GPT(config_for_size("tiny")).to(device)
    adamw = optimizer.make_adamw(model, 1e-3, 0.1, (0.9, 0.95), 1e-8, fused=cuda)
    if cuda:
        assert adamw.defaults.get("fused") is True, adamw.defaults
        big = GPT(config_for_size("124m")).cuda()
        candidates = [64, 32, 16, 8, 4, 2, 1]
        chosen = hardware.probe_micro_batch(big, candidates, 1024, precision, torch.device(device))
        assert chosen & (chosen - 1) == 0, chosen
        print("micro-batch auto for 124m at T=1024:", chosen)
        del big
    else:
        skipped += ["fused AdamW", "micro-batch probe"]
    base = dict(data=data, size="tiny", seq_len=128, batch_size=16, micro_batch=4, max_steps=6,
                save_every=3, eval_every=3, eval_steps=2, device=device, compile=False)  # fmt: skip
    setup.train({**base, "out": str(work / "whole")})
    if cuda:
        assert torch.backends.cuda.matmul.allow_tf32
    else:
        skipped.append("TF32")

    def crash(step: int) -> None:
        if step == 3:
            raise KeyboardInterrupt

    try:
        hooks = setup.TrainHooks(after_step=crash)
        setup.train({**base, "out": str(work / "broken")}, hooks=hooks)
    except KeyboardInterrupt:
        pass
    setup.train({"out": str(work / "broken")}, resume=True)
    whole, resumed = train_losses(work / "whole"), train_losses(work / "broken")
    assert whole == resumed, f"resume on {device} differs: {whole} vs {resumed}"
    print(f"resume on {device}: bit for bit")
    for extra, name in (([], "ddp"), (["--fsdp"], "fsdp")):
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                   "--nproc_per_node", "1", "-m", "gpt2cli", "train", "--data", data,
                   "-o", str(work / name), "--size", "tiny", "--seq-len", "128",
                   "--batch-size", "16", "--micro-batch", "4", "--max-steps", "4",
                   "--eval-every", "2", "--eval-steps", "2",
                   "--device", device, *extra]  # fmt: skip
        subprocess.run(command, check=True)
        backend = "nccl" if cuda else "gloo"
        print(f"{name} under torchrun ({backend}):", train_losses(work / name))
    if skipped:
        print("skipped without CUDA:", ", ".join(skipped))
    print("GPU CHECKS PASSED" if cuda else "CHECKS PASSED (cpu)")


def summary(out: Path, sizes: list[str]) -> dict[str, dict]:
    """tokens/s and MFU of each size's run (median of the steps after the warm-up)."""
    import yaml

    results = {}
    for size in sizes:
        records = [json.loads(line) for line in open(out / f"metrics-{size}.jsonl")]
        train = [r for r in records if r["kind"] == "train"][WARM_UP_STEPS:]
        config = yaml.safe_load(open(out / f"config-{size}.yaml"))
        tokens = config["batch_size"] * config["seq_len"]
        speed = statistics.median(tokens / r["step_s"] for r in train)
        # A record's mfu is its (smoothed) tokens/s x FLOPs per token / peak: rescaled per step.
        mfu = statistics.median(
            tokens / r["step_s"] * (r["mfu"] or 0) / r["tokens_per_s"] for r in train
        )
        runtime = config["runtime"]
        results[size] = {
            "tokens_per_s": speed,
            "mfu": mfu,
            **{key: runtime[key] for key in ("micro_batch", "grad_accum", "dtype")},
        }
        print(
            f"{size}: {speed:,.0f} tokens/s, MFU {100 * mfu:.1f}%, micro-batch "
            f"{runtime['micro_batch']} x {runtime['grad_accum']} accumulation, {runtime['dtype']}"
        )
    (out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    steps = parser.add_subparsers(dest="step", required=True)
    shards = steps.add_parser("shards")
    shards.add_argument("dir")
    shards.add_argument("--documents", type=int, default=16_000)
    check = steps.add_parser("checks")
    check.add_argument("work", type=Path)
    check.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    summarise = steps.add_parser("summary")
    summarise.add_argument("out", type=Path)
    summarise.add_argument("sizes", nargs="+")
    args = parser.parse_args()
    if args.step == "shards":
        make_shards(args.dir, args.documents)
    elif args.step == "checks":
        checks(args.work, args.device)
    else:
        summary(args.out, args.sizes)


if __name__ == "__main__":
    main()
