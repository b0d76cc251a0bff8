"""`gpt2 train` up to its first step: the options read into one checked config (defaults,
--config, flags, a resumed run's config.yaml), the run directory claimed, then everything the
loop needs built from the config: data, model, precision, optimizer, resume state, run files,
trackers. :func:`train` is the whole launch; the loop itself is :class:`Trainer`'s.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gpt2cli import run_layout
from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.fileio import existing_directory
from gpt2cli.model.gpt import GPT
from gpt2cli.train import (
    checkpoint,
    distributed,
    hardware,
    metrics_log,
    mfu,
    model_setup,
    optimizer,
    rundir,
)
from gpt2cli.train import config as trainconfig
from gpt2cli.train.config import TrainConfig
from gpt2cli.train.distributed import DistEnv
from gpt2cli.train.spike_guard import SpikeGuard
from gpt2cli.train.task_eval import TaskEval
from gpt2cli.train.trackers import check_installed, open_trackers
from gpt2cli.train.trainer import Trainer, TrainHooks


def train(
    given: dict[str, Any],
    config_file: str | None = None,
    resume: bool = False,
    hooks: TrainHooks | None = None,
) -> Path:
    """Run `gpt2 train`. ``given``: option name -> value for the flags the user set."""
    torchrun = distributed.launched_by_torchrun()
    main = not torchrun or os.environ["RANK"] == "0"
    explicit, run_dir = run_options(given, config_file)
    # Rank 0 owns the directory before it reads it; the others wait at the first barrier.
    with rundir.hold(run_dir, main, create=not resume):
        try:
            world = int(os.environ["WORLD_SIZE"]) if torchrun else 0
            config, resume_from = prepare_config(explicit, run_dir, resume, world, main)
            env = distributed.setup(config.device)
            try:
                distributed.barrier(env)
                return build_trainer(config, run_dir, resume_from, env, hooks).run()
            finally:
                distributed.teardown(env)
        except OSError as error:
            raise checkpoint.write_error(error.filename or run_dir, error) from None


# --- the config -----------------------------------------------------------------------------


def run_options(given: dict[str, Any], config_file: str | None) -> tuple[dict[str, Any], Path]:
    """Defaults, --config and flags merged: (the options set, the run directory)."""
    file_options = trainconfig.load_yaml(config_file) if config_file else {}
    explicit = {**file_options, **{k: v for k, v in given.items() if v is not None}}
    out = explicit.get("out")
    if not out:
        raise UsageError("no run directory", "give -o RUN (or `out:` in the --config file)")
    return explicit, Path(out)


def prepare_config(
    explicit: dict[str, Any], run_dir: Path, resume: bool, env_world: int, main: bool = True
) -> tuple[TrainConfig, Path | None]:
    """Check the options and the run directory (rank 0 checks what it holds). Returns
    (config, checkpoint to resume from)."""
    config_path = run_dir / run_layout.CONFIG_FILE
    if explicit.get("fsdp") and env_world == 0:
        raise UsageError(
            "--fsdp needs a distributed launch",
            "run it under torchrun, e.g. torchrun --nproc_per_node 8 -m gpt2cli train --fsdp ...",
        )
    if resume:
        if not config_path.is_file():
            raise Gpt2Error(
                f"--resume: {run_dir} holds no run (no config.yaml)",
                "start a new run without --resume",
            )
        saved = trainconfig.load_yaml(config_path)
        trainconfig.check_resume(saved, explicit, str(run_dir))
        source = rundir.resume_source(run_dir, main)
        # Hardware options carry over unless flags change them; a run sharded with FSDP may
        # resume in a single process (checkpoints hold the full state either way).
        if env_world == 0:
            saved.pop("fsdp", None)
        return trainconfig.build({**explicit, "out": str(run_dir)}, base=saved), source
    config = trainconfig.build(explicit)
    if main:
        rundir.claim(run_dir)
    return config, None


# --- data -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrainData:
    """The run's one ``ShardDataset``, read by the train and the val loader alike."""

    dataset: Any
    train_tokens: int
    has_val: bool  # a val split of at least one sequence


def open_data(config: TrainConfig) -> TrainData:
    """Check --data and open it."""
    from gpt2cli.data.dataset import ShardDataset

    if not config.data:
        raise UsageError("--data is required", "a directory written by `gpt2 pack`")
    path = existing_directory(
        config.data, hint="give the directory `gpt2 pack` wrote", option="--data"
    )
    dataset = ShardDataset(path)
    if "train" not in dataset.splits:
        raise Gpt2Error(
            f"--data {config.data}: no train split",
            f"splits: {', '.join(dataset.splits) or 'none'}",
        )
    train_tokens = dataset.num_tokens("train")
    if train_tokens < config.seq_len + 1:
        raise Gpt2Error(
            f"--data {config.data}: the train split holds {train_tokens:,} tokens, fewer than "
            f"one sequence of --seq-len {config.seq_len} (+1)",
            "pack more data or lower --seq-len",
        )
    has_val = "val" in dataset.splits and dataset.num_tokens("val") >= config.seq_len + 1
    return TrainData(dataset, train_tokens, has_val)


def val_micro_batch(dataset: Any, config: TrainConfig, micro: int, env: DistEnv) -> int | None:
    """The largest of micro, micro/2, ... 1 that the val split fills once on every rank
    (None: not even one sequence each)."""
    try:
        windows = make_loader(dataset, config, "val", 1, env).windows_per_epoch
    except Gpt2Error:
        return None
    size = micro
    while size > windows // env.world_size:
        size //= 2
    return size or None


def make_loader(dataset: Any, config: TrainConfig, split: str, micro: int, env: DistEnv) -> Any:
    from gpt2cli.data.loader import TokenLoader

    return TokenLoader(
        dataset,
        split,
        config.seq_len,
        micro,
        seed=config.seed,
        rank=env.rank,
        world_size=env.world_size,
    )


# --- everything else ------------------------------------------------------------------------


def build_model(config: TrainConfig, run_dir: Path, resume_from: Path | None) -> tuple[GPT, str]:
    """The model on the CPU in training mode: new, --init-from or the resumed checkpoint."""
    saved_model = None
    if resume_from is not None:
        saved_model = trainconfig.load_runtime(run_dir / run_layout.CONFIG_FILE).get("model")
    model, origin = model_setup.build_model(config, resume_from, saved_model)
    if config.seq_len > model.config.block_size:
        raise UsageError(
            f"--seq-len {config.seq_len} is longer than the model's context "
            f"{model.config.block_size}"
        )
    model.train()
    model.recompute = config.recompute  # before the micro-batch probe: it changes the fit
    return model, origin


def choose_precision(config: TrainConfig, device: torch.device) -> tuple[hardware.Precision, bool]:
    """(autocast and loss-scaling choice, torch.compile or not) for --dtype and --compile."""
    is_cuda = device.type == "cuda"
    if is_cuda:
        hardware.enable_tf32()
    bf16 = is_cuda and torch.cuda.is_bf16_supported()
    precision = hardware.choose_precision(device.type, config.dtype, bf16)
    return precision, config.compile if config.compile is not None else is_cuda


def place_model(
    model: GPT, mode: str, compiled: bool, env: DistEnv
) -> tuple[torch.nn.Module, torch.nn.Module]:
    """The model on its device, sharded (FSDP), compiled, wrapped (DDP): (what the steps
    call, what holds back gradient sync between micro-batches)."""
    model.to(env.device)
    if mode == "fsdp":
        distributed.shard(model)  # in place
    wrapped: torch.nn.Module = torch.compile(model) if compiled else model
    if mode == "ddp":
        wrapped = distributed.wrap_ddp(wrapped, env)
    return wrapped, wrapped if mode == "ddp" else model


def make_optimizer(
    model: GPT, config: TrainConfig, precision: hardware.Precision, state: dict | None, fused: bool
) -> tuple[torch.optim.Optimizer, torch.amp.GradScaler | None]:
    """AdamW (``fused``: CUDA's fused kernel) and the fp16 loss scaler, with a resumed run's
    state."""
    betas = (config.beta1, config.beta2)
    adamw = optimizer.make_adamw(model, config.lr, config.weight_decay, betas, config.eps, fused)
    scaler = torch.amp.GradScaler("cuda") if precision.grad_scaler else None
    if state is not None:
        distributed.load_optimizer_state(model, adamw, state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
    return adamw, scaler


def open_run_files(
    config: TrainConfig, run_dir: Path, runtime: dict, resume_step: int | None, env: DistEnv
) -> tuple[Any, metrics_log.MetricsLog | None]:
    """The run directory's config.yaml written, leftovers of an interrupted save removed;
    (trackers, metrics log), both None on the ranks but 0."""
    if env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.remove_stale(run_dir)
        checkpoint.write_text_atomic(run_dir / run_layout.CONFIG_FILE, config.to_yaml(runtime))
    distributed.barrier(env)
    if not env.is_main:
        return None, None
    trackers = open_trackers(config, run_dir, resume_step, runtime)
    metrics = metrics_log.MetricsLog(
        run_dir / run_layout.METRICS_FILE,
        resume_step=resume_step,
        on_write=trackers.record if trackers else None,
    )
    return trackers, metrics


def build_trainer(
    config: TrainConfig,
    run_dir: Path,
    resume_from: Path | None,
    env: DistEnv,
    hooks: TrainHooks | None = None,
) -> Trainer:
    """Everything the loop needs, from the checked config, in an order that matters: random
    state is seeded and restored where a resumed run must find it."""
    data = open_data(config)
    check_installed(config)
    task_eval = TaskEval.from_config(config)
    precision, compiled = choose_precision(config, env.device)
    state = checkpoint.load_state(resume_from) if resume_from is not None else None
    model, origin = build_model(config, run_dir, resume_from)
    n_params = model.num_parameters()
    config = trainconfig.resolve(config, n_params, data.train_tokens)  # the run's own
    total = trainconfig.total_steps(config, data.train_tokens)
    micro = hardware.choose_micro_batch(config, model, env, precision)
    val_micro = val_micro_batch(data.dataset, config, micro, env) if data.has_val else None
    val_loader = val_start = None
    if val_micro is not None:
        val_loader = make_loader(data.dataset, config, "val", val_micro, env)
        val_start = val_loader.state_dict()
    mode = "fsdp" if config.fsdp else ("ddp" if env.enabled else "none")
    accum = config.batch_size // (env.world_size * micro)
    runtime = {
        "device": str(env.device),
        "dtype": precision.name,
        "compile": compiled,
        "micro_batch": micro,
        "grad_accum": accum,
        "world_size": env.world_size,
        "parallel": mode,
        "total_steps": total,
        "parameters": n_params,
        "model": model.config.to_dict(),
    }

    # Every rank initialised the same weights (seeded in build_model); dropout and any other
    # randomness get a stream per rank.
    checkpoint.seed_everything(config.seed + env.rank)
    start_step = tokens = 0
    loader = make_loader(data.dataset, config, "train", micro, env)
    guard = SpikeGuard(config.skip_loss_z, config.skip_grad_z, config.skip_window, config.max_skips)
    if state is not None:
        with checkpoint.restoring(resume_from):
            start_step, tokens = int(state["step"]), int(state["tokens"])
            if state.get("spike_guard"):
                guard.load_state_dict(state["spike_guard"])
            # The loader counts windows taken over all ranks, so its state fits any world size
            # and micro-batch that divide it; our micro-batch may differ from the saved run's.
            loader.load_state_dict(dict(state["loader"][0], batch_size=micro))
    if start_step >= total:
        raise UsageError(
            f"--resume: {run_dir} already finished its {total} steps",
            "raise --max-steps / --max-tokens to train further",
        )

    wrapped, sync_target = place_model(model, mode, compiled, env)
    with checkpoint.restoring(resume_from):
        fused = env.device.type == "cuda"
        adamw, scaler = make_optimizer(model, config, precision, state, fused)
        if state is not None:
            rngs = state["rng"]
            rng = rngs[env.rank] if env.rank < len(rngs) else rngs[0]
            checkpoint.set_rng_state(rng, env.device)
    trackers, metrics = open_run_files(config, run_dir, runtime, start_step if state else None, env)
    peak = config.peak_tflops
    if peak is None and env.device.type == "cuda":
        peak = mfu.peak_tflops(torch.cuda.get_device_name(env.device))

    return Trainer(
        config=config,
        run_dir=run_dir,
        env=env,
        hooks=hooks or TrainHooks(),
        origin=origin,
        n_params=n_params,
        total=total,
        precision=precision,
        compiled=compiled,
        mode=mode,
        micro=micro,
        accum=accum,
        runtime=runtime,
        loader=loader,
        val_loader=val_loader,
        val_micro=val_micro,
        val_start=val_start,
        raw=model,
        model=wrapped,
        sync_target=sync_target,
        optimizer=adamw,
        scaler=scaler,
        guard=guard,
        task_eval=task_eval,
        trackers=trackers,
        metrics=metrics,
        flops_per_token=model.flops_per_token(config.seq_len),
        peak=peak,
        start_step=start_step,
        tokens=tokens,
        last_saved=str(resume_from) if resume_from is not None else None,
    )
