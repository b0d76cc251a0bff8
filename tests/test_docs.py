"""The documentation says what the code does: links alive, task tables equal to the registry,
the README's test command equal to what CI runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]

FENCE = re.compile(r"^(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
LINK = re.compile(r"(?<!!)\[(?:[^\]\\]|\\.)*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
CODE_POINTER = re.compile(r"\b(docs/[\w.-]+\.md)(?:#([\w-]+))?")


def prose_lines(text: str) -> list[str]:
    """The lines of a Markdown page outside fenced and indented code blocks."""
    lines, fenced, previous_blank = [], False, True
    for line in text.splitlines():
        if FENCE.match(line.lstrip()):
            fenced = not fenced
            lines.append("")
            continue
        indented = line.startswith(("    ", "\t")) and previous_blank
        if fenced or (indented and not line.lstrip().startswith(("-", "*", "|"))):
            lines.append("")
            previous_blank = previous_blank and not line.strip()
            continue
        lines.append(line)
        previous_blank = not line.strip()
    return lines


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: inline markup dropped, lower case, every character
    but letters, digits, ``_``, ``-`` and spaces removed, spaces turned into ``-``."""
    text = INLINE_CODE.sub(lambda m: m.group(2), heading)
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", text)  # links: their text
    text = re.sub(r"<[^>]+>", "", text)  # HTML tags
    text = re.sub(r"(\*+|\b_+|_+\b)", "", text)  # emphasis
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor of a page, numbered as GitHub numbers repeated headings (-1, -2, ...)."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for line in prose_lines(page.read_text(encoding="utf-8")):
        match = HEADING.match(line)
        if not match:
            continue
        slug = github_slug(match.group(2))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def relative_links(page: Path) -> list[tuple[int, str]]:
    """(line number, target) of every relative link in the page's prose."""
    links = []
    for number, line in enumerate(prose_lines(page.read_text(encoding="utf-8")), 1):
        for match in LINK.finditer(INLINE_CODE.sub("", line)):
            target = match.group(1)
            if not re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE):
                links.append((number, target))
    return links


def dead_link(source: Path, target: str) -> str | None:
    """Why ``target``, linked from ``source``, leads nowhere; None when it is alive."""
    path_part, _, anchor = target.partition("#")
    destination = (source.parent / path_part).resolve() if path_part else source
    if not destination.exists():
        return f"no file {destination}"
    if anchor and destination.suffix == ".md" and anchor not in anchors(destination):
        return f"no heading #{anchor} in {destination.name}"
    return None


def test_slugs_follow_github() -> None:
    assert github_slug("Building a corpus: `gpt2 corpus`") == "building-a-corpus-gpt2-corpus"
    assert github_slug("The model, Hugging Face interop, `--model`, and `gpt2 sample`") == (
        "the-model-hugging-face-interop---model-and-gpt2-sample"
    )
    assert (
        github_slug("The paper's Table 3 beside this tool") == "the-papers-table-3-beside-this-tool"
    )
    assert github_slug("llm.c token files (`--from-llmc`)") == "llmc-token-files---from-llmc"
    assert github_slug("Run directory and checkpoint") == "run-directory-and-checkpoint"
    assert github_slug("`dedup_signatures` **now**") == "dedup_signatures-now"


def test_docs_exist() -> None:
    names = {page.name for page in PAGES}
    for name in ("formats.md", "corpus.md", "training.md", "evaluation.md", "overlap.md"):
        assert name in names
    assert {"performance.md", "faults.md"} <= names


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_relative_links_are_alive(page: Path) -> None:
    dead = [
        f"{page.relative_to(ROOT)}:{line}: ({target}) {why}"
        for line, target in relative_links(page)
        if (why := dead_link(page, target))
    ]
    assert not dead, "\n".join(dead)


def test_link_checker_finds_a_dead_link(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(
        "# Title\n\n## A `code` part\n\n[ok](#a-code-part) [bad](#a-code-par) "
        "[file](missing.md) `[not a link](nowhere.md)`\n\n    [code](nowhere.md)\n",
        encoding="utf-8",
    )
    assert dead_link(page, "#a-code-part") is None
    assert dead_link(page, "#a-code-par") is not None
    assert [target for _, target in relative_links(page)] == [
        "#a-code-part",
        "#a-code-par",
        "missing.md",
    ]


def test_every_page_is_reachable_from_the_readme() -> None:
    linked = {
        (ROOT / target.partition("#")[0]).resolve()
        for _, target in relative_links(ROOT / "README.md")
        if target.partition("#")[0]
    }
    for page in PAGES[1:]:
        assert page.resolve() in linked, f"README.md links nowhere to {page.relative_to(ROOT)}"


def test_pointers_from_the_code_into_docs_are_alive() -> None:
    dead = []
    for source in sorted((ROOT / "gpt2cli").rglob("*.py")):
        for number, line in enumerate(source.read_text(encoding="utf-8").splitlines(), 1):
            for match in CODE_POINTER.finditer(line):
                page, anchor = ROOT / match.group(1), match.group(2)
                if not page.exists() or (anchor and anchor not in anchors(page)):
                    dead.append(f"{source.relative_to(ROOT)}:{number}: {match.group(0)}")
    assert not dead, "\n".join(dead)


def test_readme_test_command_is_what_ci_runs() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("Set up and run the tests:", 1)[1]
    readme_command = next(line.strip() for line in section.splitlines() if line.strip())
    ci_lines = (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
    ci_command = next(line for line in ci_lines if line.startswith("python3 -m venv"))
    assert readme_command == ci_command
    assert readme_command.endswith("python -m pytest && ruff check . && ruff format --check .")


# --- the task tables of docs/evaluation.md against the registry ---------------------------


def markdown_tables(page: Path) -> list[list[dict[str, str]]]:
    """Every table of a page as a list of rows, each row a dict keyed by the header cells."""
    tables, rows, header = [], [], None
    for line in prose_lines(page.read_text(encoding="utf-8")) + [""]:
        if line.startswith("|"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]
            if header is None:
                header = cells
            elif not all(re.fullmatch(r":?-+:?", c) for c in cells):
                rows.append(dict(zip(header, cells, strict=True)))
        elif header is not None:
            tables.append(rows)
            rows, header = [], None
    return tables


def code_spans(cell: str) -> list[str]:
    return [m.group(2) for m in INLINE_CODE.finditer(cell)]


def task_rows() -> dict[str, dict[str, str]]:
    """Each task's row in docs/evaluation.md's task tables (a row may name several tasks)."""
    rows: dict[str, dict[str, str]] = {}
    for table in markdown_tables(ROOT / "docs" / "evaluation.md"):
        for row in table:
            if "task" in row and "metrics (paper's first)" in row:
                for name in code_spans(row["task"]):
                    assert name not in rows, f"{name} in two rows"
                    rows[name] = row
    return rows


def test_task_tables_list_exactly_the_registered_tasks() -> None:
    from gpt2cli.evaluate.tasks import all_tasks

    assert sorted(task_rows()) == sorted(task.name for task in all_tasks())


EVALUATE_SOURCE = "".join(
    path.read_text(encoding="utf-8") for path in (ROOT / "gpt2cli" / "evaluate").rglob("*.py")
)


def test_task_tables_agree_with_each_task() -> None:
    from gpt2cli.evaluate.tasks import all_tasks

    rows = task_rows()
    for task in all_tasks():
        row = rows[task.name]
        files, source = row.get("file(s)", row.get("file (under `--data-dir`)", "")), row["source"]
        for data_file in task.data_files:
            assert data_file.name in code_spans(files), (task.name, data_file.name, files)
        downloadable = any(data_file.url for data_file in task.data_files)
        assert ("`--download`" in source) == downloadable, (task.name, source)
        metrics = code_spans(row["metrics (paper's first)"])
        assert metrics and metrics[0] == task.paper_metric, (task.name, metrics)
        for metric in metrics:
            assert f'"{metric}"' in EVALUATE_SOURCE, f"{task.name}: no {metric!r} in the code"
        sums = [d.sha256 for d in task.data_files if d.sha256]
        if "sha256" in row:
            assert sums == [s for s in code_spans(row["sha256"]) if len(s) == 64], task.name
        else:
            assert not sums, f"{task.name} has a sha256 that its table row does not show"


def test_filter_rule_table_is_what_list_rules_prints() -> None:
    from gpt2cli.corpus.filters import rule_table

    (table,) = [t for t in markdown_tables(ROOT / "docs" / "corpus.md") if t and "rule" in t[0]]
    documented = [
        (row["rule"].strip("`"), row["default, threshold"], row["drops a document when"])
        for row in table
    ]
    assert documented == rule_table()
