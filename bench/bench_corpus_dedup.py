"""`gpt2 corpus dedup` against datasketch, and `filter` / exact dedup against reading alone.

    python bench/bench_corpus_dedup.py [--docs 4000] [--sketch-docs 1500] [--filter-mb 20]

Writes a synthetic English-like corpus (Zipf-distributed words, 150-700 words a document)
with planted exact copies (case and spacing changed) and edited copies (1-40% of words
replaced), then, each in its own single-threaded child process, measures CPU seconds:

* near dedup (``--near 0.5 --num-perm 128 --ngram 5``), the whole command path (both
  passes over the input, JSON parsing and output included);
* datasketch's ``MinHash`` (``update_batch`` over the same 5-word shingles) inserted into and
  queried against ``MinHashLSH(threshold=0.5, num_perm=128)``, candidates joined into
  clusters, on the first ``--sketch-docs`` documents (it is the slow one);
* recall of both against the exact Jaccard pairs (shingle sets, every pair sharing one):
  the share of pairs with J >= 0.5 that end in one cluster, and of pairs with J < 0.3;
* reading the JSON Lines alone, ``filter`` (default rules; with ``--min-tokens 128``; with
  ``--lang en``) and ``dedup --exact-only``, in MB of input per CPU second.

Memory: the peak of ``tracemalloc`` (numpy's arrays included) in near dedup over the corpus
and over the ``--filter-mb`` file (the corpus repeated): the difference per document is the
memory per million documents, beside the batch working set.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import io, json, resource, sys, time
from contextlib import redirect_stdout
phase, corpus, limit = sys.argv[1], sys.argv[2], int(sys.argv[3])
from gpt2cli.commands import corpus_clean
from gpt2cli.corpus import dedup, filters, jsonl, minhash, staged_dedup
from gpt2cli.corpus.stats import StageStats
rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
sys.stdout = open("/dev/null", "w")
result = {}
cpu = time.process_time()
if phase == "read":
    stats = StageStats("read")
    for record in jsonl.read_records([corpus], "text", stats):
        pass
elif phase.startswith("filter"):
    settings = filters.FilterOptions(
        min_tokens=128 if phase == "filter-tokens" else 0,
        lang=["en"] if phase == "filter-lang" else [],
    )
    corpus_clean.filter_command([corpus], settings, staged_dedup.RecordOptions(), None)
elif phase == "memory":
    import tracemalloc
    tracemalloc.start()
    params = dedup.DedupParams.make(0.5, 5, 128, "first", "karma")
    staged_dedup.dedup_inputs([corpus], params, staged_dedup.RecordOptions(), sys.stdout.buffer)
    result["peak_mb"] = tracemalloc.get_traced_memory()[1] / 1e6
elif phase in ("exact", "near"):
    near = None if phase == "exact" else 0.5
    params = dedup.DedupParams.make(near, 5, 128, "first", "karma")
    report = corpus + "." + phase + ".clusters"
    options = staged_dedup.RecordOptions(removed_report=report)
    staged_dedup.dedup_inputs([corpus], params, options, sys.stdout.buffer)
    removed = [json.loads(line) for line in open(report)]
    result["kept_of"] = {r["document"]: r["kept"] for r in removed}
elif phase == "datasketch":
    from datasketch import MinHash, MinHashLSH
    lsh = MinHashLSH(threshold=0.5, num_perm=128)
    parent = list(range(limit))
    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x
    for index, line in enumerate(open(corpus, "rb")):
        if index == limit:
            break
        text = json.loads(line)["text"]
        sketch = MinHash(num_perm=128)
        sketch.update_batch([" ".join(s).encode() for s in minhash.shingles(text, 5)])
        for other in lsh.query(sketch):
            a, b = find(index), find(other)
            parent[max(a, b)] = min(a, b)
        lsh.insert(index, sketch)
    result["root"] = [find(i) for i in range(limit)]
result["cpu"] = time.process_time() - cpu
result["rss_mb"] = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss0) / 1024
sys.__stdout__.write(json.dumps(result))
"""


def zipf_words(rng: random.Random, vocabulary: list[str], weights: list[float], n: int):
    return rng.choices(vocabulary, weights, k=n)


def make_corpus(path: Path, documents: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    letters = "etaoinshrdlcumwfgypbvkjxqz"
    common = "the of and to a in that is was he for it with as his on be at by i have".split()
    vocabulary = common + [
        "".join(rng.choices(letters, weights=range(26, 0, -1), k=rng.randint(2, 9)))
        for _ in range(30000)
    ]
    weights = [1.0 / (rank + 1) for rank in range(len(vocabulary))]
    texts: list[str] = []
    while len(texts) < documents:
        roll = rng.random()
        if texts and roll < 0.05:
            texts.append("  ".join(rng.choice(texts).split()).upper())
        elif texts and roll < 0.15:
            rate = rng.choice([0.01, 0.03, 0.06, 0.1, 0.2, 0.4])
            base = rng.choice(texts).split()
            texts.append(
                " ".join(rng.choice(vocabulary) if rng.random() < rate else w for w in base)
            )
        else:
            words = zipf_words(rng, vocabulary, weights, rng.randint(150, 700))
            for i in range(12, len(words), rng.randint(10, 20)):
                words[i] += rng.choice(".,;")
            texts.append(" ".join(words).capitalize())
    with open(path, "w", encoding="utf-8") as out:
        for text in texts:
            out.write(json.dumps({"text": text}) + "\n")
    return texts


def child(phase: str, corpus: Path, limit: int = 0) -> dict:
    environment = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    environment["PYTHONPATH"] = str(ROOT) + os.pathsep + environment.get("PYTHONPATH", "")
    done = subprocess.run(
        [sys.executable, "-c", CHILD, phase, str(corpus), str(limit)],
        capture_output=True,
        text=True,
        env=environment,
        check=False,
    )
    if done.returncode:
        raise SystemExit(f"{phase} failed:\n{done.stderr}")
    return json.loads(done.stdout)


def exact_pairs(texts: list[str]) -> dict[tuple[int, int], float]:
    """Jaccard of every pair of documents sharing a shingle (inverted index)."""
    from gpt2cli.corpus import minhash

    sets = [minhash.shingles(text, 5) for text in texts]
    index: dict[tuple[str, ...], list[int]] = {}
    for number, shingles in enumerate(sets):
        for shingle in shingles:
            index.setdefault(shingle, []).append(number)
    candidates = set()
    for numbers in index.values():
        if 1 < len(numbers) < 50:
            candidates.update((a, b) for i, a in enumerate(numbers) for b in numbers[i + 1 :])
    return {(a, b): len(sets[a] & sets[b]) / len(sets[a] | sets[b]) for a, b in candidates}


def recall(root: list[int], pairs: dict[tuple[int, int], float], limit: int) -> tuple[float, float]:
    inside = [(a, b) for a, b in pairs if b < limit]
    high = [root[a] == root[b] for a, b in inside if pairs[a, b] >= 0.5]
    low = [root[a] == root[b] for a, b in inside if pairs[a, b] < 0.3]
    return sum(high) / max(len(high), 1), sum(low) / max(len(low), 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=4000)
    parser.add_argument("--sketch-docs", type=int, default=0, help="0: all")
    parser.add_argument("--filter-mb", type=float, default=20.0)
    parser.add_argument(
        "--seeds", type=int, default=1, help="corpora whose recall is pooled (speed: the first)"
    )
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        corpus = Path(tmp) / "corpus.jsonl"
        texts = make_corpus(corpus, args.docs)
        size_mb = corpus.stat().st_size / 1e6
        pairs = exact_pairs(texts)
        near = child("near", corpus)
        sketch_docs = min(args.sketch_docs or args.docs, args.docs)
        sketch = child("datasketch", corpus, sketch_docs)
        ours_root = list(range(args.docs))
        for document, kept in near["kept_of"].items():
            ours_root[int(document)] = kept
        ours_high, ours_low = recall(ours_root, pairs, sketch_docs)
        sketch_high, sketch_low = recall(sketch["root"], pairs, sketch_docs)
        ours_rate = args.docs / near["cpu"]
        sketch_rate = sketch_docs / sketch["cpu"]
        similar = sum(j >= 0.5 for j in pairs.values())
        print(
            f"corpus: {args.docs:,} documents, {size_mb:.1f} MB; {len(pairs):,} pairs share "
            f"a 5-gram, {similar:,} with Jaccard >= 0.5"
        )
        print(
            f"near dedup (0.5, 128 perms, 5-grams): {ours_rate:,.0f} docs/cpu-s; datasketch "
            f"MinHash+MinHashLSH: {sketch_rate:,.0f} docs/cpu-s; "
            f"ratio {ours_rate / sketch_rate:.1f}x"
        )
        print(
            f"recall of pairs J >= 0.5 (first {sketch_docs:,} docs): gpt2cli {ours_high:.3f}, "
            f"datasketch {sketch_high:.3f}; pairs J < 0.3 merged: gpt2cli {ours_low:.4f}, "
            f"datasketch {sketch_low:.4f}"
        )
        pooled = {"gpt2cli": [ours_high * similar], "datasketch": [sketch_high * similar]}
        counted = [similar]
        for seed in range(1, args.seeds):
            other = Path(tmp) / f"corpus-{seed}.jsonl"
            found = exact_pairs(make_corpus(other, sketch_docs, seed))
            ours, theirs = child("near", other), child("datasketch", other, sketch_docs)
            roots = list(range(sketch_docs))
            for document, kept in ours["kept_of"].items():
                roots[int(document)] = kept
            high = sum(j >= 0.5 for j in found.values())
            pooled["gpt2cli"].append(recall(roots, found, sketch_docs)[0] * high)
            pooled["datasketch"].append(recall(theirs["root"], found, sketch_docs)[0] * high)
            counted.append(high)
        if args.seeds > 1:
            print(
                f"recall pooled over {args.seeds} corpora ({sum(counted):,} pairs J >= 0.5): "
                + ", ".join(f"{k} {sum(v) / sum(counted):.4f}" for k, v in pooled.items())
            )
        big = Path(tmp) / "filter.jsonl"
        with open(big, "wb") as out:
            while out.tell() < args.filter_mb * 1e6:
                out.write(corpus.read_bytes())
        copies = big.stat().st_size // corpus.stat().st_size
        small, large = child("memory", corpus)["peak_mb"], child("memory", big)["peak_mb"]
        per_million = (large - small) / ((copies - 1) * args.docs) * 1e6
        print(
            f"near dedup peak traced memory: {small:.0f} MB for {args.docs:,} documents, "
            f"{large:.0f} MB for {copies * args.docs:,}: {per_million:.0f} MB per million "
            "documents beyond the batch working set"
        )
        big_mb = big.stat().st_size / 1e6
        for phase, label in (
            ("read", "read JSON Lines alone"),
            ("filter", "filter, default rules"),
            ("filter-tokens", "filter --min-tokens 128"),
            ("filter-lang", "filter --lang en"),
            ("exact", "dedup --exact-only"),
        ):
            result = child(phase, big)
            print(f"{label}: {big_mb / result['cpu']:.1f} MB/cpu-s ({big_mb:.0f} MB)")


if __name__ == "__main__":
    main()
