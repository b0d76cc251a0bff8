#!/usr/bin/env bash
# The whole gpt2cli pipeline on a corpus every Python install carries: the standard
# library's sources, their docstrings and the reference-manual text in pydoc_data.
#
#   corpus → corpus filter (keep the prose) | corpus dedup → tokenize | pack
#          → train (a small model, a few minutes) → sample
#          → score held-out prose → eval a LAMBADA-style file → overlap vs training data
#
# usage: examples/quickstart.sh   (no arguments; settings below)
# Settings (environment variables, with defaults):
#   WORK=gpt2-quickstart   work directory (replaced when it holds an earlier quickstart)
#   STEPS=1600             training steps          SIZE=tiny      model size
#   SEQ_LEN=128            context in training     BATCH=4        sequences per step
#   MICRO_BATCH=4          sequences per forward   DEVICE=auto    cpu, cuda or auto
#   LR=5e-3                peak learning rate      MAX_FILES=0    stdlib files (0: all)
#   EVAL_EVERY=400         validation interval     LAMBADA=200    eval examples
set -euo pipefail

WORK=${WORK:-gpt2-quickstart}
STEPS=${STEPS:-1600}
SIZE=${SIZE:-tiny}
SEQ_LEN=${SEQ_LEN:-128}
BATCH=${BATCH:-4}
MICRO_BATCH=${MICRO_BATCH:-4}
LR=${LR:-5e-3}
DEVICE=${DEVICE:-auto}
MAX_FILES=${MAX_FILES:-0}
EVAL_EVERY=${EVAL_EVERY:-400}
LAMBADA=${LAMBADA:-200}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
case "${1:-}" in -h|--help) usage; exit 0 ;; "") ;; *) usage >&2; exit 2 ;; esac
for number in STEPS SEQ_LEN BATCH MICRO_BATCH MAX_FILES EVAL_EVERY LAMBADA; do
  [[ ${!number} =~ ^[0-9]+$ ]] || { echo "quickstart: $number must be a number, not '${!number}'" >&2; exit 2; }
done
command -v gpt2 >/dev/null || { echo "quickstart: gpt2 is not on PATH (pip install -e .)" >&2; exit 1; }
if [ "$DEVICE" = auto ]; then
  DEVICE=$(python3 -c 'import torch; print("cuda" if torch.cuda.is_available() else "cpu")')
fi

# Reuse nothing stale: an earlier quickstart's directory is replaced, anything else is refused.
if [ -e "$WORK" ]; then
  if [ -f "$WORK/.gpt2-quickstart" ]; then
    rm -rf "$WORK"
  else
    echo "quickstart: $WORK exists and is not a quickstart directory; set WORK=another/path" >&2
    exit 1
  fi
fi
mkdir -p "$WORK" && touch "$WORK/.gpt2-quickstart"
step() { printf '\n== %s\n' "$*" >&2; }

step "1. corpus: the standard library's .py files and docstrings, pydoc_data's documentation"
python3 "$HERE/make_corpus.py" "$WORK/corpus" --max-files "$MAX_FILES" --lambada "$LAMBADA" >&2

step "2. corpus filter | corpus dedup: keep the prose (code fails indented-lines and the quality rules), drop copies"
# Prose is what a small model can be seen to learn; source code teaches it indentation.
PROSE_RULES=(--enable indented-lines --min-words 50)
gpt2 corpus filter "${PROSE_RULES[@]}" --stats "$WORK/filter.json" --rejected "$WORK/corpus/rejected.jsonl" \
    "$WORK/corpus/train.jsonl" \
  | gpt2 corpus dedup --stats "$WORK/dedup.json" --clusters "$WORK/corpus/duplicates.jsonl" > "$WORK/corpus/prose.jsonl"
gpt2 corpus filter "${PROSE_RULES[@]}" "$WORK/corpus/heldout.jsonl" > "$WORK/corpus/heldout-prose.jsonl"

step "3. tokenize | pack, then verify every shard"
gpt2 tokenize "$WORK/corpus/prose.jsonl" | gpt2 pack -o "$WORK/shards" --val-fraction 0.05 --shard-tokens 2000000
gpt2 pack --verify "$WORK/shards"

step "4. train a $SIZE model for $STEPS steps on $DEVICE"
gpt2 train --size "$SIZE" --data "$WORK/shards" -o "$WORK/run" --device "$DEVICE" \
  --max-steps "$STEPS" --seq-len "$SEQ_LEN" --batch-size "$BATCH" --micro-batch "$MICRO_BATCH" \
  --warmup $(( STEPS / 10 + 1 )) --lr "$LR" --eval-every "$EVAL_EVERY" --save-every "$STEPS"

step "5. sample"
gpt2 sample --model "$WORK/run" --max-tokens 80 --seed 1 --temperature 0.8 --top-k 40 \
  "If the argument is omitted, the function" | tee "$WORK/sample.txt"

step "6. score the held-out prose"
gpt2 score --model "$WORK/run" --summary "$WORK/corpus/heldout-prose.jsonl" > "$WORK/scores.jsonl"

step "7. eval: LAMBADA-style last-word prediction on held-out prose"
gpt2 eval lambada --model "$WORK/run" --data "$WORK/corpus/lambada.jsonl" -o "$WORK/results.json"

step "8. overlap: share of held-out 8-grams found in the training documents"
gpt2 overlap build -o "$WORK/train.bloom" "$WORK/corpus/prose.jsonl"
gpt2 overlap check --filter "$WORK/train.bloom" --json \
  "$WORK/corpus/heldout-prose.jsonl" "$WORK/corpus/lambada.jsonl" > "$WORK/overlap.json"

step "summary"
python3 - "$WORK" <<'PY'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
for stage in ("filter", "dedup"):
    stats = json.load(open(work / f"{stage}.json"))
    dropped = ", ".join(f"{k} {v}" for k, v in stats["dropped"].items()) or "nothing"
    print(f"corpus {stage}: {stats['documents_in']} documents in, {stats['documents_out']} out "
          f"(removed: {dropped})")
vals = [r for r in map(json.loads, open(work / "run/metrics.jsonl")) if r.get("kind") == "val"]
if vals:
    print(f"val loss: {vals[0]['loss']:.3f} at step {vals[0]['step']} -> "
          f"{vals[-1]['loss']:.3f} at step {vals[-1]['step']}")
summary = [json.loads(line) for line in open(work / "scores.jsonl")][-1]
print("held-out score:", {k: round(v, 4) if isinstance(v, float) else v
                          for k, v in summary.items() if k != "summary"})
results = json.load(open(work / "results.json"))["results"]
for task, metrics in results.items():
    shown = {k.split(",")[0]: round(v, 4) for k, v in metrics.items()
             if k.endswith(",none") and "_stderr" not in k and isinstance(v, float)}
    print(f"eval {task}:", shown)
overlap = json.load(open(work / "overlap.json"))
print("8-grams also in the training documents:", ", ".join(
    f"{Path(row['source']).name} {row['percent']:.2f}%" for row in overlap["inputs"]),
    f"(filter false-positive rate ~{overlap['total']['estimated_fp_rate']:.1e})")
print("sample:", repr((work / "sample.txt").read_text()[:300]))
PY
cat >&2 <<TXT

outputs in $WORK/:
  corpus/            train/heldout/lambada.jsonl, prose.jsonl (filtered, deduplicated),
                     rejected.jsonl (each with the rule that dropped it), duplicates.jsonl
  filter.json  dedup.json   what filter and dedup counted
  shards/            packed corpus (manifest.yaml)
  run/               checkpoints, metrics.jsonl, config.yaml
  run/loss.png       the loss curve
  sample.txt  scores.jsonl  results.json  overlap.json  train.bloom
TXT
