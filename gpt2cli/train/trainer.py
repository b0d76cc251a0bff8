"""`gpt2 train`: the run's config and directory, the data, and the loop (gradient
accumulation, validation, checkpoints) in :class:`Trainer`.

Pieces live beside it: ``config`` (options), ``model_setup`` (the model's shape and first
weights), ``optimizer`` (AdamW groups, LR schedule), ``hardware`` (precision, micro-batch),
``distributed`` (torchrun, DDP/FSDP), ``checkpoint`` (run directory, resume state), ``rundir``
(its owner, take-over, what a rerun does), ``log`` (metrics, progress), ``plot`` (loss.png),
``mfu`` (peak table), ``trackers``, ``task_eval``, ``spike_guard``. No CLI code here.
"""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gpt2cli import console
from gpt2cli.errors import Gpt2Error, UsageError
from gpt2cli.model.gpt import GPT
from gpt2cli.train import (
    checkpoint,
    distributed,
    hardware,
    mfu,
    model_setup,
    optimizer,
    plot,
    rundir,
)
from gpt2cli.train import config as trainconfig
from gpt2cli.train import log as trainlog
from gpt2cli.train.config import TrainConfig
from gpt2cli.train.distributed import DistEnv
from gpt2cli.train.spike_guard import SpikeGuard
from gpt2cli.train.task_eval import TaskEval
from gpt2cli.train.trackers import check_installed, open_trackers


@dataclass(frozen=True)
class TrainHooks:
    """Callables the loop runs at fixed points, given the optimizer step (1-based); tests
    inject faults through them (a crash, a NaN loss, a kill in the middle of a save)."""

    # After step N is logged, validated and saved.
    after_step: Callable[[int], None] | None = None
    # Step N's loss (summed over its micro-batches, this rank) before the finite check: the
    # returned tensor replaces it.
    loss: Callable[[int, torch.Tensor], torch.Tensor] | None = None
    # Inside the save after step N, once every file but COMPLETE is written.
    mid_save: Callable[[int], None] | None = None


# --- data -----------------------------------------------------------------------------------


def open_data(config: TrainConfig) -> tuple[Any, int, bool]:
    """Check --data and return (dataset, train tokens, has a val split): the one
    ``ShardDataset`` of the run, read by the train and the val loader alike."""
    from gpt2cli.data.dataset import ShardDataset

    if not config.data:
        raise UsageError("--data is required", "a directory written by `gpt2 pack`")
    path = Path(config.data)
    if not path.exists():
        raise Gpt2Error(f"--data {config.data}: no such directory")
    if not path.is_dir():
        raise Gpt2Error(
            f"--data {config.data}: not a directory", "give the directory `gpt2 pack` wrote"
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
    return dataset, train_tokens, has_val


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


# --- the run --------------------------------------------------------------------------------


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
) -> tuple[TrainConfig, Path, Path | None]:
    """Check the options and the run directory (rank 0 checks what it holds). Returns
    (config, run dir, checkpoint to resume from)."""
    config_path = run_dir / "config.yaml"
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
        config = trainconfig.build(explicit, base=saved)
        config.out = str(run_dir)
        return config, run_dir, source
    config = trainconfig.build(explicit)
    if main:
        rundir.claim(run_dir)
    return config, run_dir, None


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
            config, run_dir, resume_from = prepare_config(
                explicit, run_dir, resume, int(os.environ["WORLD_SIZE"]) if torchrun else 0, main
            )
            env = distributed.setup(config.device)
            try:
                distributed.barrier(env)
                return Trainer(config, run_dir, resume_from, env, hooks).run()
            finally:
                distributed.teardown(env)
        except OSError as error:
            raise checkpoint.write_error(error.filename or run_dir, error) from None


class Trainer:
    """One launch of a run: model, optimizer, data and run directory, set up; ``run()`` loops."""

    def __init__(
        self,
        config: TrainConfig,
        run_dir: Path,
        resume_from: Path | None,
        env: DistEnv,
        hooks: TrainHooks | None = None,
    ) -> None:
        self.config, self.run_dir, self.env = config, run_dir, env
        self.hooks = hooks or TrainHooks()
        self.device = device = env.device
        is_cuda = device.type == "cuda"
        dataset, train_tokens, has_val = open_data(config)
        check_installed(config)
        self.task_eval = TaskEval.from_config(config)
        if is_cuda:
            hardware.enable_tf32()
        bf16 = is_cuda and torch.cuda.is_bf16_supported()
        self.precision = hardware.choose_precision(device.type, config.dtype, bf16)
        self.compiled = config.compile if config.compile is not None else is_cuda

        state = checkpoint.load_state(resume_from) if resume_from is not None else None
        saved_model = None
        if resume_from is not None:
            saved_model = trainconfig.load_runtime(run_dir / "config.yaml").get("model")
        model, self.origin = model_setup.build_model(config, resume_from, saved_model)
        if config.seq_len > model.config.block_size:
            raise UsageError(
                f"--seq-len {config.seq_len} is longer than the model's context "
                f"{model.config.block_size}"
            )
        model.train()
        model.recompute = config.recompute  # before the micro-batch probe: it changes the fit
        self.n_params = model.num_parameters()

        self.total = trainconfig.total_steps(config, train_tokens)
        self.tokens_per_step = config.batch_size * config.seq_len
        if config.lr is None:
            config.lr = trainconfig.default_lr(self.n_params)
        if config.warmup is None:
            config.warmup = trainconfig.default_warmup(self.tokens_per_step, self.total)
        if config.size is None and not config.init_from:
            config.size = "124m"
        self.micro = hardware.choose_micro_batch(config, model, env, self.precision)
        self.accum = config.batch_size // (env.world_size * self.micro)
        self.val_micro = val_micro_batch(dataset, config, self.micro, env) if has_val else None
        self.val_loader = None
        if self.val_micro is not None:
            self.val_loader = make_loader(dataset, config, "val", self.val_micro, env)
            self.val_start = self.val_loader.state_dict()  # every validation starts here
        self.mode = "fsdp" if config.fsdp else ("ddp" if env.enabled else "none")
        self.runtime = {
            "device": str(device),
            "dtype": self.precision.name,
            "compile": self.compiled,
            "micro_batch": self.micro,
            "grad_accum": self.accum,
            "world_size": env.world_size,
            "parallel": self.mode,
            "total_steps": self.total,
            "parameters": self.n_params,
            "model": model.config.to_dict(),
        }

        # Every rank initialised the same weights (seeded in build_model); dropout and any other
        # randomness get a stream per rank.
        checkpoint.seed_everything(config.seed + env.rank)
        self.start_step = self.tokens = 0
        self.loader = make_loader(dataset, config, "train", self.micro, env)
        self.guard = SpikeGuard(
            config.skip_loss_z, config.skip_grad_z, config.skip_window, config.max_skips
        )
        if state is not None:
            with checkpoint.restoring(resume_from):
                self.start_step, self.tokens = int(state["step"]), int(state["tokens"])
                if state.get("spike_guard"):
                    self.guard.load_state_dict(state["spike_guard"])
                # The loader counts windows taken over all ranks, so its state fits any world
                # size and micro-batch that divide it; our micro-batch may differ from the
                # saved run's.
                self.loader.load_state_dict(dict(state["loader"][0], batch_size=self.micro))
        if self.start_step >= self.total:
            raise UsageError(
                f"--resume: {run_dir} already finished its {self.total} steps",
                "raise --max-steps / --max-tokens to train further",
            )

        model.to(device)
        self.raw = model  # the GPT itself (sharded in place by FSDP)
        if self.mode == "fsdp":
            distributed.shard(model)
        self.model: torch.nn.Module = torch.compile(model) if self.compiled else model
        if self.mode == "ddp":
            self.model = distributed.wrap_ddp(self.model, env)
        self.sync_target = self.model if self.mode == "ddp" else self.raw
        self.optimizer = optimizer.make_adamw(
            model,
            config.lr,
            config.weight_decay,
            (config.beta1, config.beta2),
            config.eps,
            fused=is_cuda,
        )
        self.scaler = torch.amp.GradScaler("cuda") if self.precision.grad_scaler else None
        if state is not None:
            with checkpoint.restoring(resume_from):
                distributed.load_optimizer_state(model, self.optimizer, state["optimizer"])
                if self.scaler is not None and state.get("scaler"):
                    self.scaler.load_state_dict(state["scaler"])
                rngs = state["rng"]
                rng = rngs[env.rank] if env.rank < len(rngs) else rngs[0]
                checkpoint.set_rng_state(rng, device)
        self.last_saved = str(resume_from) if resume_from is not None else None

        # The run directory: config, metrics, leftovers of an interrupted save.
        if env.is_main:
            run_dir.mkdir(parents=True, exist_ok=True)
            checkpoint.remove_stale(run_dir)
            checkpoint.write_text_atomic(run_dir / "config.yaml", config.to_yaml(self.runtime))
        distributed.barrier(env)
        resume_step = self.start_step if state else None
        self.trackers = (
            open_trackers(config, run_dir, resume_step, self.runtime) if env.is_main else None
        )
        self.metrics = (
            trainlog.MetricsLog(
                run_dir / "metrics.jsonl",
                resume_step=resume_step,
                on_write=self.trackers.record if self.trackers else None,
            )
            if env.is_main
            else None
        )
        self.flops_per_token = model.flops_per_token(config.seq_len)
        self.peak = config.peak_tflops
        if self.peak is None and is_cuda:
            self.peak = mfu.peak_tflops(torch.cuda.get_device_name(device))

    def describe(self) -> str:
        c, mode = self.config, self.mode
        return (
            f"gpt2 train: {self.origin}; {self.n_params / 1e6:,.1f}M parameters; {self.total} "
            f"steps of {c.batch_size} sequences x {c.seq_len} tokens ({self.env.world_size} "
            f"process(es) x {self.accum} micro-batches of {self.micro}); lr {c.lr:g}, warmup "
            f"{c.warmup}; {self.device}, {self.precision.name}"
            f"{', compiled' if self.compiled else ''}"
            f"{', activation recompute' if c.recompute else ''}"
            f"{', ' + mode.upper() if mode != 'none' else ''}"
        )

    def step(self, step: int, batches: Any) -> tuple[float, float, float, str | None]:
        """One optimizer step (0-based ``step``): accumulate gradients over the micro-batches,
        check the loss, clip, update unless the spike guard skips it. Returns (mean loss over
        all ranks, lr, gradient norm, why the update was skipped or None)."""
        config, device = self.config, self.device
        lr = optimizer.lr_at(step, config.lr, config.warmup, self.total, config.min_lr_ratio)
        optimizer.set_lr(self.optimizer, lr)
        loss_sum = torch.zeros((), device=device)
        for micro_step in range(self.accum):
            x, y = next(batches)
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            sync = micro_step == self.accum - 1
            with (
                distributed.gradient_sync(self.sync_target, self.mode, sync),
                self.precision.autocast(),
            ):
                _, loss = self.model(x, y)
            loss = loss / self.accum
            loss_sum += loss.detach().float()
            if self.scaler is not None:
                self.scaler.scale(loss).backward()
            else:
                loss.backward()
        if self.hooks.loss is not None:
            loss_sum = self.hooks.loss(step + 1, loss_sum)
        mean_loss = distributed.all_reduce_mean(loss_sum, self.env).item()
        if not math.isfinite(mean_loss):
            kept = f"; last good checkpoint: {self.last_saved}" if self.last_saved else ""
            raise Gpt2Error(
                f"loss became {mean_loss} at step {step + 1}: stopped{kept}",
                "lower --lr or check the data",
            )
        if self.scaler is not None:
            self.scaler.unscale_(self.optimizer)
        max_norm = config.grad_clip if config.grad_clip > 0 else math.inf
        norm = torch.nn.utils.clip_grad_norm_(self.raw.parameters(), max_norm)
        if hasattr(norm, "full_tensor"):  # FSDP: a DTensor
            norm = norm.full_tensor()
        skipped = self.guard.check(mean_loss, float(norm))
        if self.scaler is not None:
            if skipped is None:
                self.scaler.step(self.optimizer)
            self.scaler.update()
        elif skipped is None:
            self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)
        self.tokens += self.tokens_per_step
        return mean_loss, lr, float(norm), skipped

    def validate(self, step: int) -> float | None:
        """Mean loss over --eval-steps micro-batches of the val split (the same ones each time)."""
        loader = self.val_loader
        if loader is None:
            return None
        loader.load_state_dict(self.val_start)
        self.model.eval()
        total = torch.zeros((), device=self.device)
        count = 0
        with torch.no_grad():
            for x, y in loader:
                x, y = x.to(self.device), y.to(self.device)
                with self.precision.autocast():
                    _, loss = self.model(x, y)
                total += loss.float()
                count += 1
                if count >= self.config.eval_steps:
                    break
        self.model.train()
        mean = distributed.all_reduce_mean(total / max(count, 1), self.env).item()
        if self.metrics is not None:
            self.metrics.write({"kind": "val", "step": step, "loss": mean, "tokens": self.tokens})
            plot.plot_losses(self.metrics.records, self.run_dir / "loss.png")
        return mean

    def evaluate(self, step: int, progress: trainlog.Progress) -> None:
        """Validate, then run the --eval-task benchmarks; results to metrics and progress."""
        val = self.validate(step)
        if val is not None:
            progress.message(f"step {step}/{self.total}  val loss {val:.4f}")
        if self.task_eval is None:
            return
        batch = self.val_micro or self.micro
        records = self.task_eval.run(self.raw, self.env, self.precision, batch, self.mode == "fsdp")
        if self.metrics is not None:
            for record in records:
                self.metrics.write({**record, "step": step, "tokens": self.tokens})
            plot.plot_losses(self.metrics.records, self.run_dir / "loss.png")
        progress.message(f"step {step}/{self.total}  {TaskEval.summary(records)}")

    def save(self, target: Path, step: int) -> None:
        """Write a checkpoint. Collective (FSDP gathers the full state); rank 0 writes."""
        env = self.env
        model_state = distributed.full_model_state(self.raw, env) if self.mode == "fsdp" else None
        state = {
            "format": checkpoint.STATE_FORMAT,
            "step": step,
            "tokens": self.tokens,
            "world_size": env.world_size,
            "optimizer": distributed.full_optimizer_state(self.raw, self.optimizer, env),
            "scaler": self.scaler.state_dict() if self.scaler is not None else None,
            "rng": distributed.gather_objects(checkpoint.rng_state(self.device), env),
            "loader": distributed.gather_objects(self.loader.state_dict(), env),
            "spike_guard": self.guard.state_dict(),
        }
        if env.is_main:
            to_write: GPT = self.raw
            if model_state is not None:
                with torch.device("meta"):
                    to_write = GPT(self.raw.config)
                to_write.load_state_dict(model_state, assign=True)
                to_write.lm_head.weight = to_write.transformer.wte.weight
            meta = self.config.to_yaml({**self.runtime, "step": step, "tokens": self.tokens})
            mid_save = self.hooks.mid_save
            checkpoint.save(
                target, to_write, state, meta, (lambda: mid_save(step)) if mid_save else None
            )
        distributed.barrier(env)

    def run(self) -> Path:
        config, total = self.config, self.total
        progress = trainlog.Progress(total, self.start_step, config.log_every, self.env.is_main)
        progress.message(self.describe())
        if self.val_loader is None:
            progress.message(
                f"gpt2 train: {config.data} has no val split long enough for one "
                f"sequence of --seq-len {config.seq_len} per process: no validation"
            )
        batches = iter(self.loader)  # endless: epoch after epoch
        step_time: float | None = None
        started = time.perf_counter()
        try:
            if self.start_step == 0:  # the untrained model's val loss, for "before and after"
                self.evaluate(0, progress)
            for step in range(self.start_step, total):
                t0 = time.perf_counter()
                loss, lr, norm, skipped = self.step(step, batches)
                done = step + 1
                seconds = time.perf_counter() - t0
                if step > self.start_step:  # the first step of a launch compiles, warms up
                    step_time = seconds if step_time is None else 0.9 * step_time + 0.1 * seconds
                speed = self.tokens_per_step / (step_time or seconds)
                record = {
                    "kind": "train",
                    "step": done,
                    "loss": loss,
                    "lr": lr,
                    "grad_norm": norm,
                    "tokens": self.tokens,
                    "tokens_per_s": speed,
                    "mfu": mfu.mfu(speed, self.flops_per_token, self.peak, self.env.world_size),
                    "step_s": seconds,
                    "elapsed_s": time.perf_counter() - started,
                }
                if skipped is not None:
                    record["skipped"] = True
                if self.metrics is not None:
                    self.metrics.write(record)
                progress.step(record, (total - done) * (step_time or seconds))
                if skipped is not None:
                    progress.message(f"step {done}/{total}  update skipped: {skipped}")
                    self.guard.stop_if_too_many(done, skipped, self.last_saved)
                if done % config.eval_every == 0 or done == total:
                    self.evaluate(done, progress)
                if done % config.save_every == 0 and done != total:
                    target = self.run_dir / checkpoint.CHECKPOINTS / checkpoint.step_name(done)
                    self.save(target, done)
                    self.last_saved = str(target)
                    if self.env.is_main:
                        checkpoint.prune(self.run_dir, config.keep)
                if self.hooks.after_step is not None:
                    self.hooks.after_step(done)
            final = self.run_dir / checkpoint.FINAL
            self.save(final, total)
        except Gpt2Error as error:
            rundir.with_rerun(error, self.run_dir, self.last_saved)
            raise
        except OSError as error:
            what = error.filename or self.run_dir
            raise rundir.with_rerun(
                checkpoint.write_error(what, error), self.run_dir, self.last_saved
            ) from None
        except KeyboardInterrupt:
            if self.env.is_main:
                console.info(
                    f"gpt2 train: interrupted; {rundir.rerun(self.run_dir, self.last_saved)}"
                )
            raise
        finally:
            progress.close()
            if self.trackers is not None:
                self.trackers.close()
            if self.metrics is not None:
                self.metrics.close()
                if self.metrics.records:
                    with contextlib.suppress(Exception):  # never hide the real error
                        plot.plot_losses(self.metrics.records, self.run_dir / "loss.png")
        if self.metrics is not None:
            console.info(
                f"gpt2 train: {total} steps, {self.tokens:,} tokens, final loss {loss:.4f}, "
                f"{time.perf_counter() - started:.1f} s; model in {final}"
            )
        return final
