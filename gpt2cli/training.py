"""The training loop of `gpt2 train`: set-up, gradient accumulation, validation, checkpoints.

Pieces live beside it: ``trainconfig`` (options), ``optim`` (AdamW groups, LR schedule),
``distributed`` (torchrun, DDP/FSDP), ``checkpoint`` (run directory), ``trainlog`` (metrics and
progress), ``plotting`` (loss.png), ``mfu`` (peak table). No CLI code here.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from gpt2cli import checkpoint, distributed, mfu, optim, plotting, trainconfig, trainlog
from gpt2cli.distributed import DistEnv
from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.model import GPT, GPTConfig, config_for_size
from gpt2cli.trainconfig import TrainConfig

# Test hook: exit abruptly (os._exit) right after this optimizer step, as a crash would.
_CRASH_ENV = "GPT2CLI_TEST_CRASH_AFTER_STEP"
# Test hook: make the loss of this step NaN (exercises the non-finite stop).
_NAN_ENV = "GPT2CLI_TEST_NAN_AT_STEP"


def _simulate_crash() -> None:
    """Test hook: die at once, as a power cut or SIGKILL would (tests may replace it)."""
    os._exit(99)


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


# --- data -----------------------------------------------------------------------------------

def open_data(config: TrainConfig) -> tuple[Any, int, bool]:
    """Check --data and return (dataset, train tokens, has a val split)."""
    from gpt2cli import shards

    if not config.data:
        raise UsageError("--data is required", "a directory written by `gpt2 pack`")
    path = Path(config.data)
    if not path.exists():
        raise Gpt2Error(f"--data {config.data}: no such directory")
    if not path.is_dir():
        raise Gpt2Error(f"--data {config.data}: not a directory",
                        "give the directory `gpt2 pack` wrote")
    dataset = shards.ShardDataset(path)
    if "train" not in dataset.splits:
        raise Gpt2Error(f"--data {config.data}: no train split",
                        f"splits: {', '.join(dataset.splits) or 'none'}")
    train_tokens = dataset.num_tokens("train")
    if train_tokens < config.seq_len + 1:
        raise Gpt2Error(
            f"--data {config.data}: the train split holds {train_tokens:,} tokens, fewer than "
            f"one sequence of --seq-len {config.seq_len} (+1)",
            "pack more data or lower --seq-len",
        )
    has_val = "val" in dataset.splits and dataset.num_tokens("val") >= config.seq_len + 1
    return dataset, train_tokens, has_val


def make_loader(config: TrainConfig, split: str, micro: int, env: DistEnv) -> Any:
    from gpt2cli import shards

    return shards.TokenLoader(config.data, split, config.seq_len, micro, seed=config.seed,
                              rank=env.rank, world_size=env.world_size)


# --- the model ------------------------------------------------------------------------------

def model_config(config: TrainConfig, base: GPTConfig | None = None) -> GPTConfig:
    """The model's shape: --size (or the --init-from weights), the YAML ``model`` mapping,
    the context grown to --seq-len for a new model, the vocabulary padded to --pad-vocab."""
    if base is None:
        base = config_for_size(config.size or "124m")
        base = dataclasses.replace(base, block_size=max(base.block_size, config.seq_len))
    values = base.to_dict()
    if config.model:
        values.update(config.model)
    values["padded_vocab_size"] = None
    shape = GPTConfig.from_dict(values)
    if config.pad_vocab > 1:
        shape = shape.with_padding(config.pad_vocab)
    return shape


def same_shape(a: GPTConfig, b: GPTConfig) -> bool:
    keys = ("n_layer", "n_head", "n_embd", "block_size", "vocab_size")
    return all(getattr(a, k) == getattr(b, k) for k in keys)


def describe_shape(c: GPTConfig) -> str:
    return f"{c.n_layer} layers, {c.n_head} heads, {c.n_embd} wide, context {c.block_size}"


def build_model(config: TrainConfig, resume_from: Path | None,
                saved_model: dict[str, Any] | None = None) -> tuple[GPT, str]:
    """A new model, or weights from --init-from, or from the checkpoint being resumed
    (``saved_model``: the model shape recorded in the run's config.yaml)."""
    from gpt2cli import hf, modelref

    if resume_from is not None:
        shape = GPTConfig.from_dict(saved_model) if saved_model else model_config(config)
        stored = hf.read_config(resume_from)
        if not same_shape(stored, shape):
            raise UsageError(
                f"{resume_from}: checkpoint is a {describe_shape(stored)} model, the run's "
                f"config gives {describe_shape(shape)}",
                "the run directory's config.yaml does not match its checkpoints",
            )
        model = hf.load_pretrained(resume_from, dtype=torch.float32,
                                   padded_vocab_size=shape.padded_vocab_size)
        return model, f"resumed from {resume_from}"
    if config.init_from:
        loaded = modelref.load_model(config.init_from, device="cpu", dtype=torch.float32)
        shape = model_config(config, loaded.config)
        if config.size is not None:
            wanted = model_config(config)
            if not same_shape(dataclasses.replace(wanted, block_size=loaded.config.block_size),
                              loaded.config):
                raise UsageError(
                    f"--init-from {config.init_from}: the weights are a "
                    f"{describe_shape(loaded.config)} model, not --size {config.size}",
                    "drop --size to take the shape from the weights",
                )
        if config.seq_len > shape.block_size:
            raise UsageError(f"--seq-len {config.seq_len} is longer than the context "
                             f"{shape.block_size} of --init-from {config.init_from}")
        if shape.padded_vocab_size != loaded.config.padded_vocab_size:
            model = hf.from_hf_state_dict(hf.to_hf_state_dict(loaded.model), shape,
                                          config.init_from, dtype=torch.float32)
        else:
            model = loaded.model
        return model, f"initialised from {loaded.description}"
    torch.manual_seed(config.seed)
    model = GPT(model_config(config))
    return model, "new model, random initialisation"


# --- micro-batch ----------------------------------------------------------------------------

def micro_batch_candidates(per_rank: int, cap: int | None = None) -> list[int]:
    """Powers of two that divide the per-rank batch, largest first (at most ``cap``)."""
    out = []
    m = 1
    while m <= per_rank:
        if per_rank % m == 0 and (cap is None or m <= cap):
            out.append(m)
        m *= 2
    return out[::-1]


def probe_micro_batch(model: GPT, candidates: list[int], seq_len: int, precision: Precision,
                      device: torch.device, fraction: float = 0.9) -> int:
    """The largest candidate whose forward + backward + AdamW step fits in ``fraction`` of the
    GPU's memory. The trial optimizer has lr 0 and no decay, so the weights stay as they are."""
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


def choose_micro_batch(config: TrainConfig, model: GPT, env: DistEnv,
                       precision: Precision) -> int:
    if config.batch_size % env.world_size:
        raise UsageError(f"--batch-size {config.batch_size} does not split over "
                         f"{env.world_size} processes", "use a multiple of the world size")
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
    chosen = probe_micro_batch(model, micro_batch_candidates(per_rank, 1024), config.seq_len,
                               precision, env.device)
    return distributed.all_reduce_min(chosen, env)


# --- RNG and resume state -------------------------------------------------------------------

def rng_state(device: torch.device) -> dict[str, Any]:
    """Python, numpy, torch (and CUDA) generator states as plain Python values (bytes), so
    they travel through all_gather_object and load with ``weights_only=True``."""
    name, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "python": random.getstate(),
        "numpy": [name, keys.astype("<u4").tobytes(), int(pos), int(has_gauss), float(cached)],
        "torch": torch.get_rng_state().numpy().tobytes(),
    }
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device).numpy().tobytes()
    return state


def _byte_tensor(data: bytes) -> torch.Tensor:
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def set_rng_state(state: dict[str, Any], device: torch.device) -> None:
    python = state["python"]
    random.setstate((python[0], tuple(python[1]), python[2]))
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, np.frombuffer(keys, dtype="<u4").astype(np.uint32), pos,
                         has_gauss, cached))
    torch.set_rng_state(_byte_tensor(state["torch"]))
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(_byte_tensor(state["cuda"]), device)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# --- the run --------------------------------------------------------------------------------

@dataclass
class RunPlan:
    """Everything resolved before the first step."""

    config: TrainConfig
    run_dir: Path
    total_steps: int
    lr: float
    warmup: int
    micro_batch: int
    accum: int
    precision: Precision
    compile: bool
    resume_from: Path | None


def prepare_config(given: dict[str, Any], config_file: str | None, resume: bool,
                   env_world: int) -> tuple[TrainConfig, Path, Path | None]:
    """Merge defaults, --config and flags; check the run directory. Returns
    (config, run dir, checkpoint to resume from)."""
    file_options = trainconfig.load_yaml(config_file) if config_file else {}
    explicit = {**file_options, **{k: v for k, v in given.items() if v is not None}}
    out = explicit.get("out")
    if not out:
        raise UsageError("no run directory", "give -o RUN (or `out:` in the --config file)")
    run_dir = Path(out)
    config_path = run_dir / "config.yaml"
    if explicit.get("fsdp") and env_world == 0:
        raise UsageError("--fsdp needs a distributed launch",
                         "run it under torchrun, e.g. torchrun --nproc_per_node 8 -m gpt2cli "
                         "train --fsdp ...")
    if resume:
        if not config_path.is_file():
            raise Gpt2Error(f"--resume: {run_dir} holds no run (no config.yaml)",
                            "start a new run without --resume")
        saved = trainconfig.load_yaml(config_path)
        trainconfig.check_resume(saved, explicit, str(run_dir))
        source = checkpoint.latest_resumable(run_dir)
        if source is None:
            raise Gpt2Error(f"--resume: {run_dir} has no complete checkpoint",
                            "the run stopped before its first --save-every; start it again")
        # Hardware options describe a launch, not the run: a resumed run takes them afresh.
        saved = {k: v for k, v in saved.items() if k not in trainconfig.PER_LAUNCH}
        config = trainconfig.build(explicit, base=saved)
        config.out = str(run_dir)
        return config, run_dir, source
    if run_dir.exists() and not run_dir.is_dir():
        raise UsageError(f"-o {run_dir}: exists and is not a directory")
    if run_dir.is_dir() and any(
        (run_dir / name).exists()
        for name in ("config.yaml", "metrics.jsonl", checkpoint.CHECKPOINTS, checkpoint.FINAL)
    ):
        raise UsageError(f"-o {run_dir}: already holds a run",
                         "add --resume to continue it, or choose another -o")
    config = trainconfig.build(explicit)
    return config, run_dir, None


def train(given: dict[str, Any], config_file: str | None = None, resume: bool = False) -> Path:
    """Run `gpt2 train`. ``given``: option name -> value for the flags the user set."""
    torchrun = distributed.launched_by_torchrun()
    config, run_dir, resume_from = prepare_config(
        given, config_file, resume, int(os.environ.get("WORLD_SIZE", "1")) if torchrun else 0
    )
    env = distributed.setup(config.device)
    try:
        return _train(config, run_dir, resume_from, env)
    finally:
        distributed.teardown(env)


def _train(config: TrainConfig, run_dir: Path, resume_from: Path | None, env: DistEnv) -> Path:
    device = env.device
    is_cuda = device.type == "cuda"
    _, train_tokens, has_val = open_data(config)
    if is_cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    bf16 = is_cuda and torch.cuda.is_bf16_supported()
    precision = choose_precision(device.type, config.dtype, bf16)
    use_compile = config.compile if config.compile is not None else is_cuda

    state: dict[str, Any] | None = None
    if resume_from is not None:
        state = checkpoint.load_state(resume_from)
    saved_model = None
    if resume_from is not None:
        saved_model = trainconfig.load_runtime(run_dir / "config.yaml").get("model")
    model, origin = build_model(config, resume_from, saved_model)
    if config.seq_len > model.config.block_size:
        raise UsageError(f"--seq-len {config.seq_len} is longer than the model's context "
                         f"{model.config.block_size}")
    model.train()
    n_params = model.num_parameters()

    total = trainconfig.total_steps(config, train_tokens)
    tokens_per_step = config.batch_size * config.seq_len
    if config.lr is None:
        config.lr = trainconfig.default_lr(n_params)
    if config.warmup is None:
        config.warmup = trainconfig.default_warmup(tokens_per_step, total)
    if config.size is None and not config.init_from:
        config.size = "124m"
    micro = choose_micro_batch(config, model, env, precision)
    accum = config.batch_size // (env.world_size * micro)
    mode = "fsdp" if config.fsdp else ("ddp" if env.enabled else "none")
    runtime = {
        "device": str(device), "dtype": precision.name, "compile": use_compile,
        "micro_batch": micro, "grad_accum": accum, "world_size": env.world_size,
        "parallel": mode, "total_steps": total, "parameters": n_params,
        "model": dataclasses.replace(model.config).to_dict(),
    }

    # Seeds (every rank the same: identical initialisation and dropout streams per rank offset).
    seed_everything(config.seed + env.rank)
    start_step = 0
    tokens_seen = 0
    loader = make_loader(config, "train", micro, env)
    if state is not None:
        start_step = int(state["step"])
        tokens_seen = int(state["tokens"])
        # The loader counts windows taken over all ranks, so its state fits any world size
        # and micro-batch that divide it; our micro-batch may differ from the saved run's.
        loader_state = dict(state["loader"][0], batch_size=micro)
        loader.load_state_dict(loader_state)
    if start_step >= total:
        raise UsageError(f"--resume: {run_dir} already finished its {total} steps",
                         "raise --max-steps / --max-tokens to train further")

    model.to(device)
    raw = model
    if mode == "fsdp":
        distributed.shard(model)
    forward_model: torch.nn.Module = model
    if use_compile:
        forward_model = torch.compile(model)
    if mode == "ddp":
        forward_model = distributed.wrap_ddp(forward_model, env)
    sync_target = forward_model if mode == "ddp" else raw
    optimizer = optim.make_adamw(raw, config.lr, config.weight_decay,
                                 (config.beta1, config.beta2), config.eps, fused=is_cuda)
    scaler = torch.amp.GradScaler("cuda") if precision.grad_scaler else None
    if state is not None:
        distributed.load_optimizer_state(raw, optimizer, state["optimizer"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        rngs = state["rng"]
        set_rng_state(rngs[env.rank] if env.rank < len(rngs) else rngs[0], device)

    # The run directory: config, metrics, stale leftovers of an interrupted save.
    run_yaml_text = config.to_yaml(runtime)
    if env.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
        checkpoint.remove_stale(run_dir)
        checkpoint.write_text_atomic(run_dir / "config.yaml", run_yaml_text)
    distributed.barrier(env)
    metrics = trainlog.MetricsLog(run_dir / "metrics.jsonl",
                                  resume_step=start_step if state is not None else None
                                  ) if env.is_main else None

    flops_per_token = raw.flops_per_token(config.seq_len) if hasattr(
        raw, "flops_per_token") else 6 * n_params
    peak = config.peak_tflops
    if peak is None and is_cuda:
        peak = mfu.peak_tflops(torch.cuda.get_device_name(device))
    progress = trainlog.Progress(total, start_step, config.log_every, enabled=env.is_main)
    progress.message(
        f"gpt2 train: {origin}; {n_params / 1e6:,.1f}M parameters; {total} steps of "
        f"{config.batch_size} x {config.seq_len} tokens = {config.batch_size} sequences "
        f"({env.world_size} process(es) x {accum} micro-batches of {micro}); lr {config.lr:g}, "
        f"warmup {config.warmup}; {device}, {precision.name}"
        f"{', compiled' if use_compile else ''}{', ' + mode.upper() if mode != 'none' else ''}"
    )

    def save(target: Path, step: int) -> None:
        """Collective (FSDP gathers); rank 0 writes."""
        if mode == "fsdp":
            model_state = distributed.full_model_state(raw, env)
        optimizer_state = distributed.full_optimizer_state(raw, optimizer, env)
        state_out = {
            "format": checkpoint.STATE_FORMAT,
            "step": step,
            "tokens": tokens_seen,
            "world_size": env.world_size,
            "optimizer": optimizer_state,
            "scaler": scaler.state_dict() if scaler is not None else None,
            "rng": distributed.gather_objects(rng_state(device), env),
            "loader": distributed.gather_objects(loader.state_dict(), env),
        }
        if env.is_main:
            to_write: GPT = raw
            if mode == "fsdp":
                with torch.device("meta"):
                    to_write = GPT(raw.config)
                to_write.load_state_dict(model_state, assign=True)
                to_write.lm_head.weight = to_write.transformer.wte.weight
            meta = config.to_yaml({**runtime, "step": step, "tokens": tokens_seen})
            checkpoint.save(target, to_write, state_out, meta, step)
        distributed.barrier(env)

    def validate(step: int) -> float | None:
        if not has_val:
            return None
        val_loader = make_loader(config, "val", micro, env)
        forward_model.eval()
        total_loss = torch.zeros((), device=device)
        count = 0
        with torch.no_grad():
            for x, y in val_loader:
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                with precision.autocast():
                    _, loss = forward_model(x, y)
                total_loss += loss.float()
                count += 1
                if count >= config.eval_steps:
                    break
        forward_model.train()
        mean = distributed.all_reduce_mean(total_loss / max(count, 1), env).item()
        if metrics is not None:
            metrics.write({"kind": "val", "step": step, "loss": mean, "tokens": tokens_seen})
            plotting.plot_losses(metrics.records, run_dir / "loss.png")
        progress.message(f"step {step}/{total}  val loss {mean:.4f}")
        return mean

    crash_after = int(os.environ.get(_CRASH_ENV, "-1"))
    nan_at = int(os.environ.get(_NAN_ENV, "-1"))
    batches = iter(loader)
    step_time_ema: float | None = None
    started = time.perf_counter()
    last_saved = str(resume_from) if resume_from is not None else None
    try:
        for step in range(start_step, total):
            t0 = time.perf_counter()
            lr = optim.lr_at(step, config.lr, config.warmup, total, config.min_lr_ratio)
            optim.set_lr(optimizer, lr)
            loss_sum = torch.zeros((), device=device)
            for micro_step in range(accum):
                try:
                    x, y = next(batches)
                except StopIteration:
                    batches = iter(loader)
                    x, y = next(batches)
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                last = micro_step == accum - 1
                with distributed.gradient_sync(sync_target, mode, last), precision.autocast():
                    _, loss = forward_model(x, y)
                loss = loss / accum
                loss_sum += loss.detach().float()
                if scaler is not None:
                    scaler.scale(loss).backward()
                else:
                    loss.backward()
            if step + 1 == nan_at:
                loss_sum = loss_sum * float("nan")
            mean_loss = distributed.all_reduce_mean(loss_sum, env).item()
            if not math.isfinite(mean_loss):
                kept = f"; last good checkpoint: {last_saved}" if last_saved else ""
                raise Gpt2Error(
                    f"loss became {mean_loss} at step {step + 1}: stopped{kept}",
                    "lower --lr, check the data, or --resume from the checkpoint",
                )
            if scaler is not None:
                scaler.unscale_(optimizer)
            max_norm = config.grad_clip if config.grad_clip > 0 else math.inf
            norm = torch.nn.utils.clip_grad_norm_(raw.parameters(), max_norm)
            if hasattr(norm, "full_tensor"):
                norm = norm.full_tensor()
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            done = step + 1
            tokens_seen += tokens_per_step
            seconds = time.perf_counter() - t0
            # Skip the first step of a launch (compilation, warm-up) in the speed average.
            if step > start_step:
                step_time_ema = seconds if step_time_ema is None else (
                    0.9 * step_time_ema + 0.1 * seconds)
            speed = tokens_per_step / (step_time_ema or seconds)
            record = {
                "kind": "train", "step": done, "loss": mean_loss, "lr": lr,
                "grad_norm": float(norm), "tokens": tokens_seen, "tokens_per_s": speed,
                "mfu": mfu.mfu(speed, flops_per_token, peak, env.world_size),
                "step_s": seconds, "elapsed_s": time.perf_counter() - started,
            }
            if metrics is not None:
                metrics.write(record)
            progress.step(record, (total - done) * (step_time_ema or seconds))
            if done % config.eval_every == 0 or done == total:
                validate(done)
            if done % config.save_every == 0 and done != total:
                target = run_dir / checkpoint.CHECKPOINTS / checkpoint.step_name(done)
                save(target, done)
                last_saved = str(target)
                if env.is_main:
                    checkpoint.prune(run_dir, config.keep)
            if done == crash_after:
                _simulate_crash()
        save(run_dir / checkpoint.FINAL, total)
        if metrics is not None:
            plotting.plot_losses(metrics.records, run_dir / "loss.png")
    finally:
        progress.close()
        if metrics is not None:
            metrics.close()
            if metrics.records:
                with contextlib.suppress(Exception):
                    plotting.plot_losses(metrics.records, run_dir / "loss.png")
    last_train = next((r for r in reversed(metrics.records) if r["kind"] == "train"), None) \
        if metrics is not None else None
    if env.is_main and last_train is not None:
        trainlog.console.info(
            f"gpt2 train: {total} steps, {tokens_seen:,} tokens, final loss "
            f"{last_train['loss']:.4f}, {time.perf_counter() - started:.1f} s; "
            f"model in {run_dir / checkpoint.FINAL}"
        )
    return run_dir / checkpoint.FINAL
