#!/usr/bin/env bash
# The paper's zero-shot benchmarks (Table 3) on the four released GPT-2 models:
# one results JSON per model and a Markdown table beside the paper's figures.
#
# usage: examples/reproduce-table3.sh WEIGHTS_DIR DATA_DIR OUT_DIR
#   WEIGHTS_DIR  holds gpt2/ gpt2-medium/ gpt2-large/ gpt2-xl/ in HF layout; a model missing
#                there is looked up by name in the local Hugging Face cache
#   DATA_DIR     the benchmark files under their published names (`gpt2 eval --list`)
#   OUT_DIR      gets MODEL.json per model and table3.md
# Settings: MODELS="gpt2 gpt2-medium gpt2-large gpt2-xl"
#           TASKS="lambada cbt-cn cbt-ne wikitext2 ptb enwik8 text8 wikitext103 1bw"
#           LIMIT= (empty: every example)  DEVICE=auto  BATCH=8
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
[ "${1:-}" = -h ] || [ "${1:-}" = --help ] && { usage; exit 0; }
[ $# -eq 3 ] || { usage >&2; exit 2; }
WEIGHTS=$1 DATA=$2 OUT=$3
MODELS=${MODELS:-"gpt2 gpt2-medium gpt2-large gpt2-xl"}
TASKS=${TASKS:-"lambada cbt-cn cbt-ne wikitext2 ptb enwik8 text8 wikitext103 1bw"}
LIMIT=${LIMIT:-}
DEVICE=${DEVICE:-auto}
BATCH=${BATCH:-8}
[ -d "$DATA" ] || { echo "reproduce-table3: no data directory $DATA" >&2; exit 1; }
mkdir -p "$OUT"
limit=()
[ -n "$LIMIT" ] && limit=(--limit "$LIMIT")
device=()
[ "$DEVICE" != auto ] && device=(--device "$DEVICE")

for model in $MODELS; do
  spec=$model
  [ -d "$WEIGHTS/$model" ] && spec="$WEIGHTS/$model"
  echo "== $model" >&2
  # shellcheck disable=SC2086
  gpt2 eval $TASKS --model "$spec" --data-dir "$DATA" --batch-size "$BATCH" \
    "${limit[@]}" "${device[@]}" -o "$OUT/$model.json"
done

python3 - "$OUT" $MODELS <<'PY'
import json, sys
from pathlib import Path
out, models = Path(sys.argv[1]), sys.argv[2:]
# The paper's Table 3 (Radford et al., 2019): 117M, 345M, 762M, 1542M.
paper = {
    ("lambada", "perplexity"): [35.13, 15.60, 10.87, 8.63],
    ("lambada", "acc"): [45.99, 55.48, 60.12, 63.24],
    ("cbt-cn", "acc"): [87.65, 92.35, 93.45, 93.30],
    ("cbt-ne", "acc"): [83.4, 87.1, 88.0, 89.05],
    ("wikitext2", "word_perplexity"): [29.41, 22.76, 19.93, 18.34],
    ("ptb", "word_perplexity"): [65.85, 47.33, 40.31, 35.76],
    ("enwik8", "bits_per_byte"): [1.16, 1.01, 0.97, 0.93],
    ("text8", "bits_per_char"): [1.17, 1.06, 1.02, 0.98],
    ("wikitext103", "word_perplexity"): [37.50, 26.37, 22.05, 17.48],
    ("1bw", "word_perplexity"): [75.20, 55.72, 44.575, 42.16],
}
runs = {m: json.loads((out / f"{m}.json").read_text())["results"] for m in models}
rows = ["| task | metric | " + " | ".join(f"{m} (ours) | paper" for m in models) + " |",
        "|---|---|" + "---|---|" * len(models)]
keys = sorted({(t, k.split(",")[0]) for r in runs.values() for t, v in r.items()
               for k in v if k.endswith(",none") and "_stderr" not in k})
for task, metric in keys:
    cells = []
    for i, m in enumerate(models):
        value = runs[m].get(task, {}).get(f"{metric},none")
        scale = 100 if metric.startswith("acc") else 1
        ours = f"{value * scale:.2f}" if isinstance(value, (int, float)) else ""
        ref = paper.get((task, metric))
        cells += [ours, f"{ref[i]}" if ref and i < len(ref) else ""]
    rows.append(f"| {task} | {metric} | " + " | ".join(cells) + " |")
(out / "table3.md").write_text("\n".join(rows) + "\n")
print("\n".join(rows))
PY
echo "results: $OUT/*.json, table: $OUT/table3.md" >&2
