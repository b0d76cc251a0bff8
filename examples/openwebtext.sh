#!/usr/bin/env bash
# A JSONL corpus spread over many files → parallel tokenize | pack parts → one
# dataset → train GPT-2 124M. The same shape works on OpenWebText or your own crawl.
#
# usage: examples/openwebtext.sh CORPUS_DIR OUT_DIR
#   CORPUS_DIR  a directory of *.jsonl files (one {"text": ...} per line; .jsonl.zst also works
#               when zstd is installed)
#   OUT_DIR     gets shards/ and run/ (shards/ must not exist yet)
# Settings (environment variables, with defaults):
#   JOBS=$(nproc)    parallel tokenize|pack jobs (on a cluster: one Slurm array task per part,
#                    each running the `part` function below with its own --name)
#   VAL_TOKENS=1000000  tokens held out for validation, per part
#   SIZE=124m  STEPS=  (empty: one pass)  SEQ_LEN=1024  BATCH=512  MICRO_BATCH=auto  DEVICE=auto
#   TRAIN=1    set TRAIN=0 to stop after building the dataset
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
[ "${1:-}" = -h ] || [ "${1:-}" = --help ] && { usage; exit 0; }
[ $# -eq 2 ] || { usage >&2; exit 2; }
CORPUS=$1
OUT=$2
JOBS=${JOBS:-$(nproc)}
VAL_TOKENS=${VAL_TOKENS:-1000000}
SIZE=${SIZE:-124m}
STEPS=${STEPS:-}
SEQ_LEN=${SEQ_LEN:-1024}
BATCH=${BATCH:-512}
MICRO_BATCH=${MICRO_BATCH:-auto}
DEVICE=${DEVICE:-auto}
TRAIN=${TRAIN:-1}

[ -d "$CORPUS" ] || { echo "openwebtext: $CORPUS is not a directory" >&2; exit 1; }
mapfile -t FILES < <(find "$CORPUS" -maxdepth 1 -type f \( -name '*.jsonl' -o -name '*.jsonl.zst' \) | sort)
[ ${#FILES[@]} -gt 0 ] || { echo "openwebtext: no *.jsonl files in $CORPUS" >&2; exit 1; }
[ ! -e "$OUT/shards" ] || { echo "openwebtext: $OUT/shards exists already" >&2; exit 1; }
mkdir -p "$OUT/shards"

# One part: one input file → its own shards and manifest.part-NNNNN.yaml in the shared dir.
part() {
  local index=$1 file=$2
  local reader=(cat "$file")
  [[ $file == *.zst ]] && reader=(zstd -dc "$file")
  "${reader[@]}" | gpt2 tokenize --threads 1 \
    | gpt2 pack -o "$OUT/shards" --append --name "$(printf 'part-%05d' "$index")" \
        --val-tokens "$VAL_TOKENS" --seed "$index"
}
export -f part
export OUT VAL_TOKENS

for i in "${!FILES[@]}"; do printf '%s\0%s\0' "$i" "${FILES[$i]}"; done \
  | xargs -0 -n 2 -P "$JOBS" bash -c 'part "$0" "$1"'
gpt2 pack --merge "$OUT/shards"
gpt2 pack --verify "$OUT/shards"

[ "$TRAIN" = 1 ] || exit 0
steps=()
[ -n "$STEPS" ] && steps=(--max-steps "$STEPS")
gpt2 train --size "$SIZE" --data "$OUT/shards" -o "$OUT/run" --device "$DEVICE" \
  --seq-len "$SEQ_LEN" --batch-size "$BATCH" --micro-batch "$MICRO_BATCH" "${steps[@]}"
