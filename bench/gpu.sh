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
# The Python steps live in bench/gpu_checks.py; the test suite runs them on CPU
# (`checks --device cpu`, the summary on a CPU run), so they follow the code they drive.
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

# --- synthetic shards (random ids: the benchmark measures speed, not learning), GPU checks ---
python bench/gpu_checks.py shards "$WORK/shards"
python bench/gpu_checks.py checks "$WORK" 2>&1 | tee "$OUT/gpu_checks.txt"

# --- benchmark ------------------------------------------------------------------------------
for size in $SIZES; do
    run="$WORK/run-$size"
    python -m gpt2cli train --size "$size" --data "$WORK/shards" -o "$run" --micro-batch auto \
        --max-steps "$STEPS" --warmup 2 --eval-every 100000 --save-every 100000 --log-every 1 \
        > "$OUT/train-$size.log" 2>&1 || { cat "$OUT/train-$size.log"; exit 1; }
    cp "$run/metrics.jsonl" "$OUT/metrics-$size.jsonl"
    cp "$run/config.yaml" "$OUT/config-$size.yaml"
done
python bench/gpu_checks.py summary "$OUT" $SIZES | tee "$OUT/summary.txt"
