"""Generate the man pages in ``man/`` from the app's own command tree and help text.

Run ``python tools/manpage.py man/`` after changing any option or help text;
``tests/test_manpages.py`` fails when ``man/`` differs from what this produces.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer.main

from gpt2cli import __version__

DATE = "2026"
SECTION = "1"

EXAMPLES: dict[str, list[tuple[str, str]]] = {
    "": [
        (
            "Tokenize a corpus and pack it into shards",
            "cat docs.jsonl | gpt2 tokenize | gpt2 pack -o shards/",
        ),
        ("Train the 345M model", "gpt2 train --size 345m --data shards/ -o runs/medium"),
        ("Zero-shot LAMBADA", "gpt2 eval lambada --zero-shot --model runs/medium"),
    ],
    "tokenize": [
        ("Tokenize JSON Lines into a token stream file", "gpt2 tokenize < docs.jsonl > docs.tok"),
        ("Inspect ids, one JSON array per document", "gpt2 tokenize --ids < docs.jsonl"),
        ("Each file one document", "gpt2 tokenize --format file *.py > code.tok"),
        ("Back to text", "gpt2 tokenize --decode < docs.tok"),
    ],
    "pack": [
        (
            "Pack a stream into shards with a validation split",
            "gpt2 tokenize < docs.jsonl | gpt2 pack -o shards/ --val-tokens 1000000",
        ),
        ("Check every shard", "gpt2 pack --verify shards/"),
    ],
    "train": [
        ("Train 124M on one GPU", "gpt2 train --size 124m --data shards/ -o runs/small"),
        (
            "Eight GPUs with FSDP",
            "torchrun --nproc_per_node 8 -m gpt2cli train --size 1.5b --data shards/ "
            "-o runs/xl --fsdp",
        ),
        ("Resume after a crash", "gpt2 train --resume -o runs/small"),
        (
            "A tiny model on the CPU",
            "gpt2 train --size tiny --data shards/ -o runs/t --device cpu --max-steps 200",
        ),
    ],
    "sample": [
        ("Complete a prompt", 'gpt2 sample --model runs/small "The meaning of life is"'),
        (
            "Three samples with top-k",
            'echo "In a shocking finding," | gpt2 sample --model gpt2-medium -n 3 '
            "--top-k 40 --seed 1",
        ),
        (
            "Prompts in, completions out",
            "gpt2 sample --model gpt2 --jsonl < prompts.jsonl > completions.jsonl",
        ),
    ],
    "export": [
        (
            "A run as a GGUF file for llama.cpp, 8-bit",
            "gpt2 export runs/small -o small-q8_0.gguf --dtype q8_0",
        ),
        (
            "A checkpoint as a Hugging Face repository in fp16",
            "gpt2 export runs/small -o small-hf --dtype fp16",
        ),
    ],
    "score": [
        (
            "Per-document perplexity",
            "cat essays.jsonl | gpt2 score --model runs/small > scores.jsonl",
        ),
        ("Per-token log-probabilities", "gpt2 score --model gpt2 --per-token < doc.txt"),
    ],
    "eval": [
        (
            "Zero-shot LAMBADA",
            "gpt2 eval lambada --zero-shot --model gpt2 --data ~/data/lambada_test.jsonl",
        ),
        (
            "Language-modelling benchmarks into a results file",
            "gpt2 eval wikitext2 wikitext103 ptb enwik8 text8 --model runs/small "
            "--data-dir ~/data -o results.json",
        ),
        ("List the tasks", "gpt2 eval --list"),
    ],
    "corpus": [
        (
            "Outbound links of Reddit submissions with at least 3 karma",
            "gpt2 corpus links RS_2019-*.zst --min-karma 3 > links.jsonl",
        ),
        (
            "Fetch the links into WARC files, or their 2017 captures from Common Crawl",
            "gpt2 corpus fetch links.jsonl -o crawl/ "
            "[--from-archive https://index.commoncrawl.org/CC-MAIN-2017-51-index]",
        ),
        (
            "Main text of the crawled pages, joined with each link's karma",
            "gpt2 corpus extract crawl/*.warc.gz --links links.jsonl > pages.jsonl",
        ),
    ],
    "overlap": [
        (
            "Build a filter of the training set's 8-grams",
            "cat corpus/*.jsonl | gpt2 overlap build -o train.bloom",
        ),
        (
            "Merge filters built on several machines",
            "gpt2 overlap merge -o train.bloom part-*.bloom",
        ),
        (
            "Share of each test set's 8-grams in the training data",
            "gpt2 overlap check --filter train.bloom wiki.test.raw ptb.test.txt",
        ),
    ],
}

ENVIRONMENT = [
    ("NO_COLOR", "When set, messages and tables on stderr are plain text."),
    ("HF_HOME, HF_HUB_CACHE", "Where Hugging Face model names are looked up (never downloaded)."),
    (
        "XDG_CACHE_HOME",
        "Evaluation data fetched with --download goes under $XDG_CACHE_HOME/gpt2cli.",
    ),
    (
        "RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR, MASTER_PORT",
        "Set by torchrun; gpt2 train runs distributed when they are present.",
    ),
    (
        "THP_MEM_ALLOC_ENABLE",
        "PyTorch's switch for large CPU tensors on transparent huge pages (Linux); gpt2 sets it "
        "to 1 unless it is set (0 turns it off). Streaming the weights, as a CPU decoding step "
        "does, is faster on huge pages.",
    ),
]

EXIT_STATUS = [
    ("0", "Success."),
    ("1", "A runtime error: bad input data, a missing file, a corrupt shard or checkpoint."),
    ("2", "A usage error: unknown option, bad option value."),
    ("130", "Interrupted (Ctrl-C)."),
]


def _escape(text: str) -> str:
    text = text.replace("\\", "\\e").replace("-", "\\-")
    lines = []
    for line in text.splitlines():
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def _paragraphs(text: str) -> str:
    blocks = [" ".join(block.split()) for block in text.strip().split("\n\n") if block.strip()]
    return "\n.PP\n".join(_escape(block) for block in blocks)


def _option_lines(command) -> list[str]:
    """One ``.TP`` entry per option, from the same help records ``--help`` prints."""
    context = command.make_context(command.name, [], resilient_parsing=True)
    lines: list[str] = []
    for param in command.get_params(context):
        if getattr(param, "hidden", False) or param.param_type_name != "option":
            continue
        record = param.get_help_record(context)
        if record is None:
            continue
        names, help_text = record
        lines += [".TP", "\\fB" + _escape(names) + "\\fR"]
        lines.append(_escape(" ".join(help_text.split())) or "(no description)")
    return lines


def _synopsis(prog: str, command) -> str:
    parts = [f"\\fB{_escape(prog)}\\fR", "[\\fIOPTIONS\\fR]"]
    for param in command.params:
        if param.param_type_name == "argument":
            name = param.name.upper()
            parts.append(f"[\\fI{name}\\fR...]" if param.nargs == -1 else f"\\fI{name}\\fR")
    if hasattr(command, "commands"):
        parts.append("\\fICOMMAND\\fR [\\fIARGS\\fR]...")
    return " ".join(parts)


def render(prog: str, command, name: str, see_also: list[str], detail: bool = True) -> str:
    title = prog.replace(" ", "-")
    summary = (command.short_help or (command.help or "").strip().split("\n\n")[0]).strip()
    summary = " ".join(summary.split()).split(". ")[0].rstrip(".")
    out = [
        f'.TH "{title.upper()}" "{SECTION}" "{DATE}" "gpt2cli {__version__}" "gpt2cli manual"',
        ".SH NAME",
        f"{_escape(title)} \\- {_escape(summary)}",
        ".SH SYNOPSIS",
        _synopsis(prog, command),
        ".SH DESCRIPTION",
        _paragraphs(command.help or summary),
    ]
    options = _option_lines(command)
    if options:
        out += [".SH OPTIONS", *options]
    subcommands = getattr(command, "commands", {})
    if subcommands:
        out.append(".SH COMMANDS")
        for sub_name, sub in sorted(subcommands.items()):
            if not detail:
                summary = (sub.help or "").strip().split("\n\n")[0]
                out += [
                    ".TP",
                    f"\\fB{_escape(prog)} {_escape(sub_name)}\\fR",
                    _escape(" ".join(summary.split())),
                ]
                continue
            out += [".SS " + _escape(f"{prog} {sub_name}"), _synopsis(f"{prog} {sub_name}", sub)]
            out += [".PP", _paragraphs(sub.help or sub.short_help or "")]
            out += _option_lines(sub)
    out += [".SH EXIT STATUS"]
    for code, meaning in EXIT_STATUS:
        out += [".TP", code, _escape(meaning)]
    out += [".SH ENVIRONMENT"]
    for variable, meaning in ENVIRONMENT:
        out += [".TP", f"\\fB{_escape(variable)}\\fR", _escape(meaning)]
    out += [
        ".SH FILES",
        _escape(
            "Standard input is read when no FILE is given or FILE is '-'. Data is written to "
            "standard output, messages and progress to standard error. Output files are "
            "written to a temporary name in the same directory and renamed when complete."
        ),
    ]
    examples = EXAMPLES.get(name, [])
    if examples:
        out.append(".SH EXAMPLES")
        for caption, line in examples:
            out += [
                ".PP",
                _escape(caption) + ":",
                ".PP",
                ".RS 4",
                ".nf",
                _escape(line),
                ".fi",
                ".RE",
            ]
    out += [".SH SEE ALSO", ", ".join(f"\\fB{_escape(page)}\\fR(1)" for page in see_also)]
    return "\n".join(out) + "\n"


def generate() -> dict[str, str]:
    """File name → page text for ``gpt2(1)`` and one page per subcommand."""
    from gpt2cli.app import app

    root = typer.main.get_command(app)
    names = sorted(root.commands)
    pages = {"gpt2.1": render("gpt2", root, "", [f"gpt2-{n}" for n in names], detail=False)}
    for name in names:
        others = ["gpt2"] + [f"gpt2-{n}" for n in names if n != name]
        pages[f"gpt2-{name}.1"] = render(f"gpt2 {name}", root.commands[name], name, others)
    return pages


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    directory = Path(args[0] if args else "man")
    directory.mkdir(parents=True, exist_ok=True)
    pages = generate()
    for stale in directory.glob("gpt2*.1"):
        if stale.name not in pages:
            stale.unlink()
    for file_name, text in pages.items():
        (directory / file_name).write_text(text, encoding="utf-8")
    print(f"wrote {len(pages)} man pages to {directory}/", file=sys.stderr)


if __name__ == "__main__":
    main()
