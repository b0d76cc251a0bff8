#!/usr/bin/env bash
# Contamination analysis as in the GPT-2 paper (§4): a Bloom filter of the training
# data's 8-grams, each test set checked against it, overlapping documents dropped.
#
# usage: examples/decontaminate.sh OUT_DIR TRAIN_FILE... -- TEST_FILE...
#   TRAIN_FILE  training documents (any `gpt2 tokenize` format)
#   TEST_FILE   test sets; each gets OUT_DIR/<name>.clean with the documents whose
#               overlap is at most MAX_OVERLAP percent, in the input's format
# Settings: N=8  FP_RATE=1e-8  MAX_OVERLAP=0.0  JOBS=$(nproc) (filters built in parallel)
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
[ "${1:-}" = -h ] || [ "${1:-}" = --help ] && { usage; exit 0; }
[ $# -ge 4 ] || { usage >&2; exit 2; }
OUT=$1; shift
TRAIN=() TESTS=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do TRAIN+=("$1"); shift; done
[ "${1:-}" = -- ] || { usage >&2; exit 2; }
shift
TESTS=("$@")
[ ${#TRAIN[@]} -gt 0 ] && [ ${#TESTS[@]} -gt 0 ] || { usage >&2; exit 2; }
for file in "${TRAIN[@]}" "${TESTS[@]}"; do
  [ -f "$file" ] || { echo "decontaminate: no such file $file" >&2; exit 1; }
done
# A name that starts with '-' would be read as an option (by cat, basename and gpt2): ./-name
safe() { case $1 in -*) printf './%s' "$1" ;; *) printf '%s' "$1" ;; esac; }
OUT=$(safe "$OUT")
for i in "${!TRAIN[@]}"; do TRAIN[i]=$(safe "${TRAIN[i]}"); done
for i in "${!TESTS[@]}"; do TESTS[i]=$(safe "${TESTS[i]}"); done
N=${N:-8} FP_RATE=${FP_RATE:-1e-8} MAX_OVERLAP=${MAX_OVERLAP:-0.0} JOBS=${JOBS:-$(nproc)}
mkdir -p "$OUT/parts"

# One filter per training file, in parallel, with one shared capacity so they can be merged.
capacity=$(cat "${TRAIN[@]}" | wc -w)
export OUT N FP_RATE capacity
printf '%s\0' "${TRAIN[@]}" | xargs -0 -I{} -P "$JOBS" bash -c \
  'gpt2 overlap build -n "$N" --fp-rate "$FP_RATE" --capacity "$capacity" \
     -o "$OUT/parts/$(basename "$1").bloom" "$1"' _ {}
gpt2 overlap merge -o "$OUT/train.bloom" "$OUT"/parts/*.bloom

gpt2 overlap check --filter "$OUT/train.bloom" --json "${TESTS[@]}" > "$OUT/overlap.json"
for test in "${TESTS[@]}"; do
  gpt2 overlap check --filter "$OUT/train.bloom" --exclude-overlapping \
    --max-overlap "$MAX_OVERLAP" -o "$OUT/$(basename "$test").clean" "$test"
done
echo "filter: $OUT/train.bloom  report: $OUT/overlap.json  clean sets: $OUT/*.clean" >&2
