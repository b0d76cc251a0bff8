"""One thin module per subcommand: argument parsing and I/O wiring around a core module.

Each module ``gpt2cli.commands.NAME`` has ``NAME`` and ``register(app)``, and is imported only
when its command runs or shows its help (``gpt2cli.app``). ``COMMANDS`` is what ``gpt2 --help``
lists without importing any: each command's name and the first sentence of its help (a test
holds the two to the commands' own help). A new command is one more entry.
"""

COMMANDS: dict[str, str] = {
    "corpus": "Build a WebText-style corpus (GPT-2 paper §2.1): outbound links of Reddit "
    "submissions with enough karma, their pages' main text out of a WARC crawl, then filters "
    "and de-duplication.",
    "tokenize": "Turn documents into a GPT-2 token stream.",
    "pack": "Pack token streams into zstd shards with a YAML manifest, split into train and val "
    "by whole documents.",
    "train": "Train or fine-tune a GPT-2 on packed shards.",
    "sample": "Continue PROMPT with a GPT-2 and stream the text to stdout.",
    "score": "Score documents under a model: one JSON line per document with tokens, characters, "
    "bytes, words, nll (nats), ppl (per token), bits_per_byte and word_ppl.",
    "eval": "Run zero-shot benchmarks (lambada, wikitext2, ...) on a model: a table on stderr, "
    "the results JSON (lm-evaluation-harness's layout) with -o or --json.",
    "export": "Export a model as a complete Hugging Face repository or a GGUF file for llama.cpp.",
    "overlap": "N-gram overlap between a training corpus and test sets (GPT-2 paper §4): build a "
    "Bloom filter of the training text's n-grams, merge filters, check test sets against it.",
}

# Commands with verbs (`gpt2 corpus filter`): their errors name the verb too.
GROUPS = ("corpus", "overlap")
