"""The machine side of training: compute precision, TF32, and the micro-batch that fits.

CPU-testable: every choice is a function of the device type and the user's request.
"""

from __future__ import annotations

import contextlib
import gc
from dataclasses import dataclass

import torch

from gpt2cli.errors import UsageError
from gpt2cli.model.gpt import GPT
from gpt2cli.train import config as trainconfig
from gpt2cli.train import distributed
from gpt2cli.train.config import TrainConfig
from gpt2cli.train.distributed import DistEnv


def enable_tf32() -> None:
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True


# --- precision ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Precision:
    """How the forward pass runs: autocast dtype (None: plain fp32) and loss scaling."""

    device_type: str
    autocast_dtype: torch.dtype | None
    grad_scaler: bool

    @property
    def name(self) -> str:
        if self.autocast_dtype is None:
            return "float32"
        return str(self.autocast_dtype).removeprefix("torch.")

    def autocast(self) -> contextlib.AbstractContextManager:
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device_type, dtype=self.autocast_dtype)


def choose_precision(device_type: str, request: str, bf16_supported: bool) -> Precision:
    """CUDA: bf16 autocast, or fp16 autocast + GradScaler where bf16 is missing. CPU: fp32
    (bf16 autocast on request). Weights and optimizer state stay fp32 in every case."""
    if request == "float32":
        return Precision(device_type, None, False)
    if device_type == "cpu":
        if request == "float16":
            raise UsageError("--dtype float16 needs CUDA", "use float32 or bfloat16 on CPU")
        if request == "bfloat16":
            return Precision("cpu", torch.bfloat16, False)
        return Precision("cpu", None, False)
    if request == "bfloat16" and not bf16_supported:
        raise UsageError("--dtype bfloat16: this GPU has no bf16", "use --dtype float16")
    if request == "bfloat16" or (request == "auto" and bf16_supported):
        return Precision(device_type, torch.bfloat16, False)
    return Precision(device_type, torch.float16, True)


def micro_batch_candidates(per_rank: int, cap: int | None = None) -> list[int]:
    """Powers of two that divide the per-rank batch, largest first (at most ``cap``)."""
    out = []
    m = 1
    while m <= per_rank:
        if per_rank % m == 0 and (cap is None or m <= cap):
            out.append(m)
        m *= 2
    return out[::-1]


def probe_micro_batch(
    model: GPT,
    candidates: list[int],
    seq_len: int,
    precision: Precision,
    device: torch.device,
    fraction: float = 0.9,
) -> int:
    """The largest candidate whose forward + backward + AdamW step fits in ``fraction`` of the
    GPU's memory, tried as the run trains (``model.recompute`` on or off). The trial optimizer
    has lr 0 and no decay, so the weights stay as they are."""
    trial = torch.optim.AdamW(model.parameters(), lr=0.0, weight_decay=0.0)
    torch.cuda.set_per_process_memory_fraction(fraction, device)
    chosen = 1
    try:
        for m in candidates:
            ok = True
            try:
                x = torch.randint(0, model.config.vocab_size, (m, seq_len), device=device)
                with precision.autocast():
                    _, loss = model(x, x)
                loss.backward()
                trial.step()
                torch.cuda.synchronize(device)
            except torch.OutOfMemoryError:
                ok = False
            finally:
                x = loss = None
                model.zero_grad(set_to_none=True)
                gc.collect()
                torch.cuda.empty_cache()
            if ok:
                chosen = m
                break
    finally:
        trial.state.clear()
        del trial
        gc.collect()
        torch.cuda.empty_cache()
        torch.cuda.set_per_process_memory_fraction(1.0, device)
    return chosen


def choose_micro_batch(config: TrainConfig, model: GPT, env: DistEnv, precision: Precision) -> int:
    if config.batch_size % env.world_size:
        raise UsageError(
            f"--batch-size {config.batch_size} does not split over {env.world_size} processes",
            "use a multiple of the world size",
        )
    per_rank = config.batch_size // env.world_size
    if isinstance(config.micro_batch, int):
        if per_rank % config.micro_batch:
            raise UsageError(
                f"--micro-batch {config.micro_batch} does not divide the {per_rank} sequences "
                f"each of the {env.world_size} process(es) computes per step",
                "pick a divisor, or --micro-batch auto",
            )
        return config.micro_batch
    if env.device.type != "cuda":
        return micro_batch_candidates(per_rank, trainconfig.CPU_MICRO_BATCH)[0]
    model.to(env.device)
    chosen = probe_micro_batch(
        model, micro_batch_candidates(per_rank, 1024), config.seq_len, precision, env.device
    )
    return distributed.all_reduce_min(chosen, env)
