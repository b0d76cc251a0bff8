"""bench/gpu.sh's Python steps on CPU: what can run without a GPU runs here, so the script a
GPU session depends on stays in step with the trainer's API."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_checks.py"


def step(*args: str | Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, str(SCRIPT), *map(str, args)], capture_output=True, text=True, env=env
    )


def test_gpu_script_steps_run_on_cpu(tmp_path: Path) -> None:
    shards = step("shards", tmp_path / "shards", "--documents", "200")
    assert shards.returncode == 0, shards.stderr
    checks = step("checks", tmp_path, "--device", "cpu")
    assert checks.returncode == 0, checks.stdout + checks.stderr
    assert "resume on cpu: bit for bit" in checks.stdout
    assert "ddp under torchrun (gloo)" in checks.stdout
    assert "fsdp under torchrun (gloo)" in checks.stdout
    assert checks.stdout.rstrip().endswith("CHECKS PASSED (cpu)")

    # the benchmark's run, as gpu.sh starts it, then its summary
    run, out = tmp_path / "run-tiny", tmp_path / "out"
    out.mkdir()
    train = subprocess.run(
        [sys.executable, "-m", "gpt2cli", "train", "--size", "tiny", "--data",
         tmp_path / "shards", "-o", run, "--micro-batch", "auto", "--max-steps", "5",
         "--warmup", "2", "--eval-every", "100000", "--save-every", "100000",
         "--log-every", "1", "--seq-len", "64", "--batch-size", "4", "--device", "cpu"],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(REPO)),
    )  # fmt: skip
    assert train.returncode == 0, train.stderr
    (out / "metrics-tiny.jsonl").write_bytes((run / "metrics.jsonl").read_bytes())
    (out / "config-tiny.yaml").write_bytes((run / "config.yaml").read_bytes())
    summary = step("summary", out, "tiny")
    assert summary.returncode == 0, summary.stderr
    results = json.loads((out / "results.json").read_text())["tiny"]
    assert results["tokens_per_s"] > 0 and results["mfu"] == 0  # no peak FLOP/s known on CPU
    assert results["dtype"] and results["micro_batch"] * results["grad_accum"] == 4
    assert summary.stdout.startswith("tiny: ")
