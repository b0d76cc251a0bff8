#!/usr/bin/env bash
# GPU checks and benchmark of `gpt2 train`, in one command, on a machine with one CUDA GPU:
#
#     OUT=/tmp/gpu-results bash bench/gpu.sh            # from the repository root
#
# 1. Environment: the python3 on PATH (PYTHON=... to choose) must have CUDA torch; gpt2cli runs
#    from this checkout (PYTHONPATH, nothing installed). A dependency it lacks is installed from
#    wheels in .whl/ when there are some, else from the package index. The lent device machines
#    have CUDA torch and every dependency but zstandard, and no network: before using one, run
#        bash bench/gpu.sh --fetch-wheels
#    here (it downloads zstandard for their Python 3.12 into .whl/, which git ignores) and carry
#    .whl with the run.
# 2. GPU-only checks (exit non-zero on failure): bf16 autocast chosen, TF32 on, fused AdamW,
#    --micro-batch auto picks a power of two, a tiny run on CUDA resumes bit for bit, a 1-process
#    torchrun (nccl) DDP run works, a 1-process FSDP run works.
# 3. Benchmark: 124M and 355M, bf16 + torch.compile + --micro-batch auto, 512 x 1024 tokens per
#    step on synthetic shards; tokens/s and MFU (median of the steps after compilation).
# Everything lands in $OUT: gpu_checks.txt, train-*.log, metrics-*.jsonl, results.json.
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS=(zstandard==0.25.0)
if [ "${1:-}" = "--fetch-wheels" ]; then
    grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo /.whl/ >> .git/info/exclude
    python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl "${WHEELS[@]}"
    ls .whl
    exit 0
fi
OUT="${OUT:-$PWD/gpu-results}"
mkdir -p "$OUT"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
STEPS="${GPU_BENCH_STEPS:-12}"
SIZES="${GPU_BENCH_SIZES:-124m 355m}"
PY="${PYTHON:-python3}"
python() { command "$PY" "$@"; }

if ! python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
    echo "bench/gpu.sh: $PY has no CUDA torch (or sees no GPU); nothing to measure" >&2
    exit 1
fi
if ! python -c "import zstandard" 2>/dev/null; then
    if compgen -G ".whl/*.whl" > /dev/null; then
        python -m pip install -q --no-index --no-deps --no-compile --target "$WORK/site" .whl/*.whl
        export PYTHONPATH="$WORK/site"
    else
        python -m pip install -q "${WHEELS[@]}"
    fi
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
python -c "import gpt2cli.train.trainer, gpt2cli.data.loader"  # every import the run needs, or fail here
nvidia-smi > "$OUT/nvidia-smi.txt" 2>&1 || true
python - <<'EOF' | tee "$OUT/env.txt"
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda)
print("device", torch.cuda.get_device_name(0), "bf16", torch.cuda.is_bf16_supported())
EOF

# --- synthetic shards: random ids (the benchmark measures speed, not learning) ------------------
python - "$WORK/shards" <<'EOF'
import sys
import numpy as np
from gpt2cli.data.pack import PackOptions, pack
from gpt2cli.text import token_stream
out = sys.argv[1]
rng = np.random.default_rng(0)
stream = out + ".tokens"
with open(stream, "wb") as f:
    f.write(token_stream.HEADER)
    for _ in range(16_000):  # ~16M tokens
        f.write(token_stream.encode_document(rng.integers(0, 50256, 1000, dtype=np.uint16)))
pack([stream], out, PackOptions(val_tokens=200_000))
EOF

# --- GPU-only checks ------------------------------------------------------------------------
python - "$WORK" <<'EOF' 2>&1 | tee "$OUT/gpu_checks.txt"
import json, subprocess, sys
from pathlib import Path
import torch
from gpt2cli.model.gpt import GPT, config_for_size
from gpt2cli.train import hardware, optimizer, trainer
from gpt2cli.train import log as trainlog

work = Path(sys.argv[1])
data = str(work / "shards")
p = hardware.choose_precision("cuda", "auto", torch.cuda.is_bf16_supported())
assert p.autocast_dtype == (torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
model = GPT(config_for_size("tiny")).cuda()
opt = optimizer.make_adamw(model, 1e-3, 0.1, (0.9, 0.95), 1e-8, fused=True)
assert opt.defaults.get("fused") is True, opt.defaults
m = hardware.probe_micro_batch(GPT(config_for_size("124m")).cuda(), [64, 32, 16, 8, 4, 2, 1],
                               1024, p, torch.device("cuda"))
assert m & (m - 1) == 0
print("micro-batch auto for 124m at T=1024:", m)
base = dict(data=data, size="tiny", seq_len=128, batch_size=16, micro_batch=4, max_steps=6,
            save_every=3, eval_every=3, eval_steps=2, device="cuda", compile=False)
trainer.train({**base, "out": str(work / "whole")})
assert torch.backends.cuda.matmul.allow_tf32
def crash(step):
    if step == 3:
        raise KeyboardInterrupt
try:
    trainer.train({**base, "out": str(work / "broken")}, hooks=trainer.TrainHooks(after_step=crash))
except KeyboardInterrupt:
    pass
trainer.train({"out": str(work / "broken")}, resume=True)
def losses(run):
    return [r["loss"] for r in trainlog.read_metrics(run / "metrics.jsonl") if r["kind"] == "train"]
a, b = losses(work / "whole"), losses(work / "broken")
print("resume on CUDA: bit for bit" if a == b else f"resume on CUDA differs: {a} vs {b}")
for extra, name in (([], "ddp"), (["--fsdp"], "fsdp")):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
           "-m", "gpt2cli", "train", "--data", data, "-o", str(work / name), "--size", "tiny",
           "--seq-len", "128", "--batch-size", "16", "--micro-batch", "4", "--max-steps", "4",
           "--eval-every", "2", "--eval-steps", "2", *extra]
    subprocess.run(cmd, check=True)
    print(name, "under torchrun (nccl):", losses(work / name))
print("GPU CHECKS PASSED")
EOF

# --- benchmark ------------------------------------------------------------------------------
for size in $SIZES; do
    run="$WORK/run-$size"
    python -m gpt2cli train --size "$size" --data "$WORK/shards" -o "$run" --micro-batch auto \
        --max-steps "$STEPS" --warmup 2 --eval-every 100000 --save-every 100000 --log-every 1 \
        > "$OUT/train-$size.log" 2>&1 || { cat "$OUT/train-$size.log"; exit 1; }
    cp "$run/metrics.jsonl" "$OUT/metrics-$size.jsonl"
    cp "$run/config.yaml" "$OUT/config-$size.yaml"
done
python - "$OUT" $SIZES <<'EOF' | tee "$OUT/summary.txt"
import json, statistics, sys
from pathlib import Path
import yaml
out = Path(sys.argv[1])
results = {}
for size in sys.argv[2:]:
    records = [json.loads(l) for l in open(out / f"metrics-{size}.jsonl")]
    train = [r for r in records if r["kind"] == "train"][3:]  # after compilation / warm-up
    tokens = 512 * 1024
    speed = statistics.median(tokens / r["step_s"] for r in train)
    # Each record's mfu is its (smoothed) tokens/s x flops per token / peak.
    mfu = statistics.median(tokens / r["step_s"] * (r["mfu"] or 0) / r["tokens_per_s"]
                            for r in train)
    runtime = yaml.safe_load(open(out / f"config-{size}.yaml"))["runtime"]
    results[size] = {"tokens_per_s": speed, "mfu": mfu, "micro_batch": runtime["micro_batch"],
                     "grad_accum": runtime["grad_accum"], "dtype": runtime["dtype"]}
    print(f"{size}: {speed:,.0f} tokens/s, MFU {100 * mfu:.1f}%, micro-batch "
          f"{runtime['micro_batch']} x {runtime['grad_accum']} accumulation, {runtime['dtype']}")
(out / "results.json").write_text(json.dumps(results, indent=2) + "\n")
EOF
