#!/usr/bin/env bash
# Hugging Face weights in → fine-tune on your text → Hugging Face weights out.
#
# usage: examples/finetune.sh WEIGHTS DATA.jsonl OUT_DIR
#   WEIGHTS   an HF-layout directory (config.json + model.safetensors) or a name in the
#             local HF cache (gpt2, gpt2-medium, openai-community/gpt2, ...)
#   DATA      documents in any `gpt2 tokenize` format (JSON Lines with "text", ...)
#   OUT_DIR   gets shards/, run/ and hf/ (the fine-tuned model in HF layout)
# Settings: STEPS=200 SEQ_LEN=1024 BATCH=32 MICRO_BATCH=auto LR=1e-4 DEVICE=auto
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
[ "${1:-}" = -h ] || [ "${1:-}" = --help ] && { usage; exit 0; }
[ $# -eq 3 ] || { usage >&2; exit 2; }
WEIGHTS=$1 DATA=$2 OUT=$3
STEPS=${STEPS:-200} SEQ_LEN=${SEQ_LEN:-1024} BATCH=${BATCH:-32}
MICRO_BATCH=${MICRO_BATCH:-auto} LR=${LR:-1e-4} DEVICE=${DEVICE:-auto}
[ -e "$DATA" ] || { echo "finetune: no data file $DATA" >&2; exit 1; }
[ ! -e "$OUT/run" ] || { echo "finetune: $OUT/run exists already (gpt2 train --resume -o $OUT/run continues it)" >&2; exit 1; }
mkdir -p "$OUT"

rm -rf "$OUT/shards"
gpt2 tokenize "$DATA" | gpt2 pack -o "$OUT/shards" --val-fraction 0.05
gpt2 train --init-from "$WEIGHTS" --data "$OUT/shards" -o "$OUT/run" --device "$DEVICE" \
  --max-steps "$STEPS" --seq-len "$SEQ_LEN" --batch-size "$BATCH" --micro-batch "$MICRO_BATCH" \
  --lr "$LR" --warmup $(( STEPS / 10 + 1 ))
# Checkpoints are already in the HF layout: the export is a copy of the weights and config.
rm -rf "$OUT/hf.tmp" && mkdir "$OUT/hf.tmp"
cp "$OUT/run/final/config.json" "$OUT/run/final/model.safetensors" "$OUT/hf.tmp/"
rm -rf "$OUT/hf" && mv "$OUT/hf.tmp" "$OUT/hf"
echo "fine-tuned model in HF layout: $OUT/hf (transformers.GPT2LMHeadModel.from_pretrained('$OUT/hf'))" >&2
