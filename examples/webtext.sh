#!/usr/bin/env bash
# WebText as the GPT-2 paper built it (§2.1), from raw data to shards:
#
#   Reddit dumps → corpus links (karma >= 3, Wikipedia excluded) → corpus fetch → WARC
#   → corpus extract (trafilatura) → corpus filter (domains, length, language, quality)
#   → corpus dedup (exact + MinHash near duplicates) → tokenize | pack
#
# usage: examples/webtext.sh OUT_DIR DUMP... [-- WARC...]
#   DUMP   Pushshift submission dumps (RS_*.zst as published; plain or gzip too)
#   WARC   a crawl of OUT_DIR/links.jsonl's urls you already have (any crawler's WARC);
#          without it the links are fetched by `gpt2 corpus fetch` into OUT_DIR/crawl
#          (robots.txt obeyed, one connection a host; killed, run again: it resumes)
# Settings: ARCHIVE= a CDX API URL: fetch each link's capture closest to its date from the
#   archive instead of the live site (the way to rebuild 2017-era links, docs/fetch.md), e.g.
#   https://index.commoncrawl.org/CC-MAIN-2017-51-index   FETCH_OPTIONS= more fetch options
#   MIN_KARMA=3  EXCLUDE=wikipedia.org  MIN_TOKENS=128  LANG_CODE=en
#   NEAR=0.5 (Jaccard threshold)  KEEP=karma (or first)  JOBS=0 (extract processes, 0: all)
#   DEDUP_PARTS=1: with N > 1 the staged dedup on N parts, each stage's tasks in parallel
#   here; under Slurm each is an array task, e.g. for part i of N and bucket b of B:
#     gpt2 corpus dedup-signatures part-$i.jsonl -o sig/part-$i.sig
#     gpt2 corpus dedup-buckets -s sig/part-0.sig ... --bucket $b --buckets B -o edges/$b
#     gpt2 corpus dedup-clusters edges/* -s sig/part-0.sig ... -o clusters.ddp   (one task)
#     gpt2 corpus dedup-filter part-$i.jsonl -c clusters.ddp --part $i > kept/part-$i.jsonl
set -euo pipefail

usage() { awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "${BASH_SOURCE[0]}"; }
[ "${1:-}" = -h ] || [ "${1:-}" = --help ] && { usage; exit 0; }
[ $# -ge 2 ] || { usage >&2; exit 2; }
OUT=$1; shift
DUMPS=() WARCS=()
while [ $# -gt 0 ] && [ "$1" != -- ]; do DUMPS+=("$1"); shift; done
if [ "${1:-}" = -- ]; then
  shift
  WARCS=("$@")
  [ ${#WARCS[@]} -gt 0 ] || { usage >&2; exit 2; }
fi
[ ${#DUMPS[@]} -gt 0 ] || { usage >&2; exit 2; }
for file in "${DUMPS[@]}" "${WARCS[@]}"; do
  [ -f "$file" ] || { echo "webtext: no such file $file" >&2; exit 1; }
done
MIN_KARMA=${MIN_KARMA:-3} EXCLUDE=${EXCLUDE:-wikipedia.org} MIN_TOKENS=${MIN_TOKENS:-128}
LANG_CODE=${LANG_CODE:-en} NEAR=${NEAR:-0.5} KEEP=${KEEP:-karma} JOBS=${JOBS:-0}
DEDUP_PARTS=${DEDUP_PARTS:-1} ARCHIVE=${ARCHIVE:-} FETCH_OPTIONS=${FETCH_OPTIONS:-}
[[ $DEDUP_PARTS =~ ^[1-9][0-9]*$ ]] || { echo "webtext: DEDUP_PARTS must be a number" >&2; exit 2; }
mkdir -p "$OUT"
step() { printf '\n== %s\n' "$*" >&2; }

step "1. links: external links of submissions with karma >= $MIN_KARMA, $EXCLUDE excluded"
gpt2 corpus links "${DUMPS[@]}" --min-karma "$MIN_KARMA" --exclude-domain "$EXCLUDE" \
  --stats "$OUT/links.stats.json" > "$OUT/links.jsonl"
if [ ${#WARCS[@]} -eq 0 ]; then
  step "2. fetch: the linked pages into WARC files${ARCHIVE:+, from the archive $ARCHIVE}"
  # shellcheck disable=SC2086 # FETCH_OPTIONS is a list of options
  gpt2 corpus fetch "$OUT/links.jsonl" -o "$OUT/crawl" ${ARCHIVE:+--from-archive "$ARCHIVE"} \
    $FETCH_OPTIONS --stats "$OUT/fetch.stats.json"
  shopt -s nullglob
  WARCS=("$OUT"/crawl/*.warc.gz)
  shopt -u nullglob
  if [ ${#WARCS[@]} -eq 0 ]; then
    echo "webtext: no page fetched (see $OUT/crawl/fetch.jsonl)" >&2
    exit 1
  fi
fi

step "3. extract: main text of the HTML pages, joined with each link's karma"
gpt2 corpus extract "${WARCS[@]}" --links "$OUT/links.jsonl" -j "$JOBS" \
  --stats "$OUT/extract.stats.json" > "$OUT/pages.jsonl"

step "4. filter: $EXCLUDE, fewer than $MIN_TOKENS tokens, not $LANG_CODE, the quality rules"
gpt2 corpus filter "$OUT/pages.jsonl" --exclude-domain "$EXCLUDE" --min-tokens "$MIN_TOKENS" \
  --lang "$LANG_CODE" --rejected "$OUT/rejected.jsonl" --stats "$OUT/filter.stats.json" \
  > "$OUT/clean.jsonl"

step "5. dedup: exact and near duplicates (Jaccard >= $NEAR over 5-word shingles), keep $KEEP"
if [ "$DEDUP_PARTS" -eq 1 ]; then
  gpt2 corpus dedup "$OUT/clean.jsonl" --near "$NEAR" --keep "$KEEP" \
    --clusters "$OUT/duplicates.jsonl" --stats "$OUT/dedup.stats.json" > "$OUT/webtext.jsonl"
else
  stage=$OUT/dedup-stages
  rm -rf "$stage" && mkdir -p "$stage"
  total=$(wc -l < "$OUT/clean.jsonl")
  per_part=$(( (total + DEDUP_PARTS - 1) / DEDUP_PARTS ))
  split -l "$(( per_part > 0 ? per_part : 1 ))" -d -a 5 --additional-suffix=.jsonl \
    "$OUT/clean.jsonl" "$stage/part-"
  parts=("$stage"/part-*.jsonl)
  signatures=()
  for part in "${parts[@]}"; do signatures+=(-s "${part%.jsonl}.sig"); done
  export NEAR KEEP stage
  printf '%s\0' "${parts[@]}" | xargs -0 -P "$DEDUP_PARTS" -I{} bash -c \
    'gpt2 corpus dedup-signatures "$1" --near "$NEAR" -o "${1%.jsonl}.sig"' _ {}
  seq 0 $(( DEDUP_PARTS - 1 )) | xargs -P "$DEDUP_PARTS" -I{} \
    gpt2 corpus dedup-buckets "${signatures[@]}" --bucket {} --buckets "$DEDUP_PARTS" \
    -o "$stage/bucket-{}.edges"
  gpt2 corpus dedup-clusters "$stage"/bucket-*.edges "${signatures[@]}" --keep "$KEEP" \
    -o "$stage/clusters.ddp"
  for index in "${!parts[@]}"; do
    gpt2 corpus dedup-filter "${parts[$index]}" -c "$stage/clusters.ddp" --part "$index" \
      --clusters "$stage/duplicates-$index.jsonl" > "$stage/kept-$index.jsonl"
  done
  for index in "${!parts[@]}"; do cat "$stage/kept-$index.jsonl"; done > "$OUT/webtext.jsonl"
  for index in "${!parts[@]}"; do cat "$stage/duplicates-$index.jsonl"; done \
    > "$OUT/duplicates.jsonl"
fi

step "6. tokenize | pack"
gpt2 tokenize "$OUT/webtext.jsonl" | gpt2 pack -o "$OUT/shards" --val-fraction 0.05
gpt2 pack --verify "$OUT/shards"

step "summary"
python3 - "$OUT" <<'PY'
import json, sys
from pathlib import Path
out = Path(sys.argv[1])
for stage in ("links", "fetch", "extract", "filter", "dedup"):
    path = out / f"{stage}.stats.json"
    if path.exists():
        stats = json.loads(path.read_text())
        dropped = ", ".join(f"{k} {v}" for k, v in stats["dropped"].items()) or "nothing"
        print(f"{stage}: {stats['documents_in']} in, {stats['documents_out']} out ({dropped})")
documents = sum(1 for _ in open(out / "webtext.jsonl"))
print(f"webtext.jsonl: {documents} documents; shards in {out / 'shards'}")
PY
