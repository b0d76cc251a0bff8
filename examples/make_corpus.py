"""Write the quickstart corpus from files every Python install carries.

Documents: the reference-manual topics bundled in ``pydoc_data``, the standard library's
``.py`` sources and, for each source, its docstrings (module, classes, functions) as a
document of prose. Prose documents come out as a web page's text comes out of an
extractor: each paragraph on one line (the 72-column wrapping undone), headings' underlines,
indented blocks (code, grammar) and doctest examples left out. Every ``--holdout``-th
document goes to the held-out set; from held-out prose a LAMBADA-style file is built
(passages whose last word the model must predict).

usage: python make_corpus.py OUTDIR [--max-files N] [--holdout K]
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import sysconfig
from pathlib import Path


def stdlib_sources(limit: int) -> list[tuple[str, str]]:
    root = Path(sysconfig.get_paths()["stdlib"])
    files = sorted(
        path
        for path in root.rglob("*.py")
        if "site-packages" not in path.parts
        and "test" not in path.parts
        and "tests" not in path.parts
    )
    documents = []
    for path in files[:limit] if limit else files:
        try:
            documents.append((str(path.relative_to(root)), path.read_text(encoding="utf-8")))
        except (UnicodeDecodeError, OSError):
            continue
    return documents


def docstrings(source: str) -> str:
    """The module's, classes' and functions' docstrings, in order, one paragraph each."""
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return ""
    kinds = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)
    found = (ast.get_docstring(node) for node in ast.walk(tree) if isinstance(node, kinds))
    return "\n\n".join(text for text in found if text)


def as_prose(text: str) -> str:
    """Paragraphs on one line each, without underlines, indented blocks or doctests."""
    paragraphs = []
    for paragraph in re.split(r"\n\s*\n", text):
        lines = [line for line in paragraph.splitlines() if line.strip()]
        lines = [line for line in lines if not re.fullmatch(r"\s*[-*=~^#+]{3,}\s*", line)]
        if not lines or lines[0].startswith((" ", "\t")) or lines[0].startswith(">>>"):
            continue
        paragraphs.append(" ".join(" ".join(line.split()) for line in lines))
    return "\n\n".join(paragraphs)


def with_docstrings(sources: list[tuple[str, str]]) -> list[tuple[str, str]]:
    documents = []
    for name, text in sources:
        documents.append((name, text))
        prose = as_prose(docstrings(text))
        if prose:
            documents.append((f"docstrings:{name}", prose))
    return documents


def pydoc_topics() -> list[tuple[str, str]]:
    from pydoc_data.topics import topics

    return [(f"pydoc_data:{name}", as_prose(text)) for name, text in sorted(topics.items())]


def lambada_passages(texts: list[str], count: int) -> list[str]:
    """Prose passages (≥ 40 words) ending in a word: the last word is the target."""
    passages = []
    for text in texts:
        for paragraph in re.split(r"\n\s*\n", text):
            words = paragraph.split()
            if len(words) < 40 or not re.fullmatch(r"[A-Za-z]+", words[-1].rstrip(".")):
                continue
            words[-1] = words[-1].rstrip(".")
            passages.append(" ".join(words[-80:]))
            if len(passages) >= count:
                return passages
    return passages


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--max-files", type=int, default=0, help="stdlib files to take (0: all)")
    parser.add_argument("--holdout", type=int, default=20, help="every K-th document is held out")
    parser.add_argument("--lambada", type=int, default=200, help="LAMBADA-style examples")
    args = parser.parse_args()
    args.outdir.mkdir(parents=True, exist_ok=True)
    documents = pydoc_topics() + with_docstrings(stdlib_sources(args.max_files))
    train, heldout = [], []
    for index, (name, text) in enumerate(documents):
        (heldout if index % args.holdout == args.holdout - 1 else train).append(
            {"name": name, "text": text}
        )
    for file_name, rows in (("train.jsonl", train), ("heldout.jsonl", heldout)):
        with open(args.outdir / file_name, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row) + "\n")
    prose = sorted((row for row in heldout), key=lambda row: not row["name"].startswith("pydoc"))
    prose = [row["text"] for row in prose]
    with open(args.outdir / "lambada.jsonl", "w", encoding="utf-8") as handle:
        for passage in lambada_passages(prose, args.lambada):
            handle.write(json.dumps({"text": passage}) + "\n")
    print(f"{len(train)} training documents, {len(heldout)} held out", flush=True)


if __name__ == "__main__":
    main()
