"""`gpt2 train` under torchrun on CPU (2 gloo processes): DDP and FSDP follow the same loss
trajectory as one process with the same global batch, and their checkpoints resume anywhere."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import pytest
import torch
from _processes import run_module  # tests/ is on sys.path
from _train_runs import make_shards, options, write_task_data

from gpt2cli import run_layout
from gpt2cli.train import metrics_log, setup

WORKER = textwrap.dedent("""
    import sys
    import torch
    import torch.distributed as dist
    from gpt2cli.train import setup

    torch.set_num_threads(1)
    dist.init_process_group("gloo")  # one group for both runs (saves a start-up)
    data, ddp_run, fsdp_run, tasks = sys.argv[1:5]
    options = dict(data=data, size="tiny", seq_len=32, batch_size=8, micro_batch=2,
                   max_steps=4, save_every=2, eval_every=2, eval_steps=2, device="cpu",
                   eval_task=["hellaswag", "lambada"], eval_task_limit=3, eval_task_data=tasks)
    setup.train({**options, "out": ddp_run})
    setup.train({**options, "out": fsdp_run, "fsdp": True})
    dist.destroy_process_group()
""")


def records(run: Path, kind: str) -> list[dict]:
    return [r for r in metrics_log.read_metrics(run / "metrics.jsonl") if r["kind"] == kind]


def losses(run: Path, kind: str) -> list[float]:
    return [r["loss"] for r in metrics_log.read_metrics(run / "metrics.jsonl") if r["kind"] == kind]


@pytest.mark.skipif(not torch.distributed.is_available(), reason="no torch.distributed")
def test_ddp_and_fsdp_match_one_process(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    torch.set_num_threads(1)
    data = make_shards(tmp_path / "shards")
    tasks = write_task_data(tmp_path / "tasks")
    single = tmp_path / "single"
    # One process: 8 sequences per step as 2 micro-batches of 4.
    setup.train(
        options(
            data,
            single,
            eval_task=["hellaswag", "lambada"],
            eval_task_limit=3,
            eval_task_data=str(tasks),
        )
    )
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    ddp, fsdp = tmp_path / "ddp", tmp_path / "fsdp"
    monkeypatch.delenv("RANK", raising=False)
    run_module(
        sys.executable,
        "torch.distributed.run",
        "--standalone",
        "--nproc_per_node",
        "2",
        script,
        data,
        ddp,
        fsdp,
        tasks,
        env={"OMP_NUM_THREADS": "1"},
        timeout=300,
    )
    # Two processes: 8 sequences per step as 2 ranks x 2 micro-batches of 2, same windows.
    for run in (ddp, fsdp):
        assert losses(run, "train") == pytest.approx(losses(single, "train"), abs=1e-5, rel=0)
        assert losses(run, "val") == pytest.approx(losses(single, "val"), abs=1e-5, rel=0)
        assert run_layout.is_complete(run / "final")
        # --eval-task: each rank scored its share of the examples; the metrics are all of them.
        tasks_run, tasks_single = records(run, "task"), records(single, "task")
        assert [(r["step"], r["task"], r["n"]) for r in tasks_run] == [
            (r["step"], r["task"], r["n"]) for r in tasks_single
        ]
        for mine, theirs in zip(tasks_run, tasks_single):
            assert mine["metrics"] == pytest.approx(theirs["metrics"], rel=1e-4)
    # Weights agree too (FSDP gathered the full state dict for saving).
    from safetensors.torch import load_file

    reference = load_file(single / "final" / "model.safetensors")
    for run in (ddp, fsdp):
        weights = load_file(run / "final" / "model.safetensors")
        for name, tensor in reference.items():
            torch.testing.assert_close(weights[name], tensor, atol=1e-5, rtol=0)
    # A checkpoint written by 2 FSDP ranks resumes in one process (portable state).
    setup.train({"out": str(fsdp), "max_steps": 5, "device": "cpu"}, resume=True)
    assert len(losses(fsdp, "train")) == 5
