"""`gpt2 train`'s loop (gradient accumulation, validation, checkpoints) in :class:`Trainer`.

Pieces live beside it: ``config`` (options), ``setup`` (the launch: config, run directory,
everything the loop needs), ``model_setup`` (the model's shape and first
weights), ``optimizer`` (AdamW groups, LR schedule), ``hardware`` (precision, micro-batch),
``distributed`` (torchrun, DDP/FSDP), ``checkpoint`` (run directory, resume state), ``rundir``
(its owner, take-over, what a rerun does), ``log`` (metrics, progress), ``plot`` (loss.png),
``mfu`` (peak table), ``trackers``, ``task_eval``, ``spike_guard``. No CLI code here.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from gpt2cli import console, run_layout
from gpt2cli.errors import Gpt2Error
from gpt2cli.model.gpt import GPT
from gpt2cli.train import (
    checkpoint,
    distributed,
    hardware,
    metrics_log,
    mfu,
    optimizer,
    plot,
    rundir,
)
from gpt2cli.train.config import TrainConfig
from gpt2cli.train.distributed import DistEnv
from gpt2cli.train.spike_guard import SpikeGuard
from gpt2cli.train.task_eval import TaskEval


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


@dataclass(eq=False)
class Trainer:
    """One launch of a run, set up (``gpt2cli.train.setup.build_trainer``): ``run()`` loops
    from ``start_step`` to ``total``, validating, saving and logging on the way."""

    config: TrainConfig  # resolved: lr, warmup and size decided
    run_dir: Path
    env: DistEnv
    hooks: TrainHooks
    origin: str  # where the weights came from, for the first progress line
    n_params: int
    total: int  # optimizer steps of the whole run
    precision: hardware.Precision
    compiled: bool
    mode: str  # "none", "ddp" or "fsdp"
    micro: int  # sequences per forward pass and process
    accum: int  # micro-batches per optimizer step and process
    runtime: dict[str, Any]  # config.yaml's runtime section
    loader: Any
    val_loader: Any | None  # None: no val split long enough
    val_micro: int | None
    val_start: dict[str, Any] | None  # every validation starts from this loader state
    raw: GPT  # the model itself (sharded in place by FSDP)
    model: torch.nn.Module  # what the steps call: compiled, wrapped by DDP
    sync_target: torch.nn.Module  # what holds back gradient sync between micro-batches
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler | None
    guard: SpikeGuard
    task_eval: TaskEval | None
    trackers: Any | None  # rank 0 only, as metrics
    metrics: metrics_log.MetricsLog | None
    flops_per_token: float
    peak: float | None  # TFLOP/s of one device, for MFU
    start_step: int
    tokens: int  # trained on so far
    last_saved: str | None  # the newest checkpoint written

    @property
    def device(self) -> torch.device:
        return self.env.device

    @property
    def tokens_per_step(self) -> int:
        return self.config.batch_size * self.config.seq_len

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
            plot.plot_losses(self.metrics.records, self.run_dir / run_layout.LOSS_PLOT)
        return mean

    def evaluate(self, step: int, progress: metrics_log.Progress) -> None:
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
            plot.plot_losses(self.metrics.records, self.run_dir / run_layout.LOSS_PLOT)
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
        progress = metrics_log.Progress(total, self.start_step, config.log_every, self.env.is_main)
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
                    target = self.run_dir / run_layout.CHECKPOINTS / run_layout.step_name(done)
                    self.save(target, done)
                    self.last_saved = str(target)
                    if self.env.is_main:
                        checkpoint.prune(self.run_dir, config.keep)
                if self.hooks.after_step is not None:
                    self.hooks.after_step(done)
            final = self.run_dir / run_layout.FINAL
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
                        plot.plot_losses(self.metrics.records, self.run_dir / run_layout.LOSS_PLOT)
        if self.metrics is not None:
            console.info(
                f"gpt2 train: {total} steps, {self.tokens:,} tokens, final loss {loss:.4f}, "
                f"{time.perf_counter() - started:.1f} s; model in {final}"
            )
        return final
