"""torch.distributed for `gpt2 train`: torchrun environment, process group, DDP / FSDP wrapping,
gradient-sync control during accumulation, collectives, and full state dicts for saving.

A process started by torchrun has RANK, WORLD_SIZE and LOCAL_RANK in its environment; anything
else is a single process (world size 1, no process group).
"""

from __future__ import annotations

import contextlib
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from gpt2cli.errors import UsageError
from gpt2cli.model import resolve


@dataclass
class DistEnv:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    enabled: bool = False  # a process group is up
    device: torch.device = torch.device("cpu")
    owns_group: bool = False  # setup() created the process group (teardown destroys it)

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def launched_by_torchrun() -> bool:
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def resolve_device(request: str, local_rank: int = 0) -> torch.device:
    """``resolve.resolve_device``, and under torchrun process N takes cuda:N for ``cuda``."""
    device = resolve.resolve_device(request)
    if device.type != "cuda":
        return device
    if device.index is None:
        device = torch.device("cuda", local_rank)
    if device.index >= torch.cuda.device_count():
        raise UsageError(f"--device {device}: only {torch.cuda.device_count()} GPU(s) here")
    return device


def setup(device_request: str) -> DistEnv:
    """Join the process group when launched by torchrun (nccl on CUDA, gloo on CPU)."""
    if not launched_by_torchrun():
        return DistEnv(device=resolve_device(device_request))
    rank = int(os.environ["RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_request, local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    owns = not dist.is_initialized()
    if owns:
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    return DistEnv(rank, world_size, local_rank, True, device, owns)


def teardown(env: DistEnv) -> None:
    if env.owns_group and dist.is_initialized():
        dist.destroy_process_group()


def barrier(env: DistEnv) -> None:
    if env.enabled:
        dist.barrier()


def all_reduce_mean(value: torch.Tensor, env: DistEnv) -> torch.Tensor:
    if env.enabled:
        value = value.clone()
        dist.all_reduce(value, op=dist.ReduceOp.SUM)
        value /= env.world_size
    return value


def all_reduce_min(value: int, env: DistEnv) -> int:
    if not env.enabled:
        return value
    tensor = torch.tensor([value], dtype=torch.long, device=env.device)
    dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
    return int(tensor.item())


def gather_objects(obj: Any, env: DistEnv) -> list[Any]:
    """Every rank's ``obj``, indexed by rank (on every rank)."""
    if not env.enabled:
        return [obj]
    result: list[Any] = [None] * env.world_size
    dist.all_gather_object(result, obj)
    return result


def shard(model: nn.Module) -> nn.Module:
    """FSDP2: shard each transformer block, then the rest (embeddings, tied head, ln_f)."""
    from torch.distributed.fsdp import fully_shard

    # The logits the model returns are a view (of the padded output layer, or of the CPU
    # kernel's 2-D result); FSDP warns that an in-place op on them would skip its hook. The
    # trainer only reads the loss, so the warning says nothing about this run.
    warnings.filterwarnings("ignore", message=r"FSDP2-wrapped module .* returned a view tensor")
    for block in model.transformer.h:
        fully_shard(block)
    fully_shard(model)
    return model


def wrap_ddp(model: nn.Module, env: DistEnv) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    device_ids = [env.device.index] if env.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=device_ids)


@contextlib.contextmanager
def gradient_sync(model: nn.Module, mode: str, sync: bool) -> Iterator[None]:
    """Skip the gradient all-reduce on micro-steps before the last one of a step.

    ``mode``: "none" (single process), "ddp" (``model`` is the DDP wrapper) or "fsdp" (``model``
    is the fully_shard-ed root module).
    """
    if mode == "ddp" and not sync:
        with model.no_sync():
            yield
        return
    if mode == "fsdp":
        model.set_requires_gradient_sync(sync)
    yield


def full_model_state(model: nn.Module, env: DistEnv) -> dict[str, torch.Tensor]:
    """FSDP: the unsharded state dict on CPU (on rank 0; empty elsewhere). Collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=True)
    return get_model_state_dict(model, options=options)


def full_optimizer_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, env: DistEnv
) -> dict[str, Any]:
    """The optimizer state keyed by parameter names, unsharded, on CPU (rank 0). Collective."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_optimizer_state_dict

    options = StateDictOptions(full_state_dict=True, cpu_offload=env.enabled)
    return get_optimizer_state_dict(model, optimizer, options=options)


def load_optimizer_state(
    model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]
) -> None:
    """Load a state from ``full_optimizer_state`` (every rank passes the full state)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, set_optimizer_state_dict

    set_optimizer_state_dict(
        model, optimizer, state, options=StateDictOptions(full_state_dict=True)
    )
