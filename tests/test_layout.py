"""The package layout's rules, read from the source: the core never imports the CLI, module-level
imports have no cycles, the model imports no training or I/O code, and no module is huge."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "gpt2cli"
CLI_MODULES = ("gpt2cli.cli", "gpt2cli.app", "gpt2cli.commands", "gpt2cli.__main__")
MODEL_CORE = (
    "gpt2cli.model.gpt",
    "gpt2cli.model.cpu_kernels",
    "gpt2cli.model.compiled_kernels",
    "gpt2cli.model.packed_weights",
    "gpt2cli.model.decoding",
)
MAX_LINES = 600


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def imports(path: Path, top_level_only: bool) -> set[str]:
    """The gpt2cli modules a file imports (``from gpt2cli.x import y`` counts y when it is a
    module)."""
    known = modules()
    tree = ast.parse(path.read_text(encoding="utf-8"))
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found: set[str] = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("gpt2cli"))
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if not node.module.startswith("gpt2cli"):
                continue
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                found.add(sub if sub in known else node.module)
    return found


def is_cli(name: str) -> bool:
    return any(name == c or name.startswith(c + ".") for c in CLI_MODULES)


def test_the_core_never_imports_the_cli() -> None:
    offenders = {
        name: sorted(i for i in imports(path, top_level_only=False) if is_cli(i))
        for name, path in modules().items()
        if not is_cli(name)
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_module_level_imports_have_no_cycles() -> None:
    graph = {name: imports(path, top_level_only=True) for name, path in modules().items()}
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(name: str) -> None:
        state[name] = 1
        stack.append(name)
        for dep in sorted(graph.get(name, ())):
            if dep not in graph or dep == name:
                continue
            if state.get(dep) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(dep) :]))
            if dep not in state:
                visit(dep)
        stack.pop()
        state[name] = 2

    for name in graph:
        if name not in state:
            visit(name)


def test_the_model_imports_no_training_inference_or_io_code() -> None:
    allowed = ("gpt2cli.model", "gpt2cli.errors")
    for name in MODEL_CORE:
        found = imports(modules()[name], top_level_only=False)
        assert all(i.startswith(allowed) for i in found), (name, sorted(found))


def test_no_module_is_over_the_size_limit() -> None:
    sizes = {name: len(p.read_text(encoding="utf-8").splitlines()) for name, p in modules().items()}
    assert {name: n for name, n in sizes.items() if n > MAX_LINES} == {}


def test_core_module_names_are_unique_and_no_package_s_name() -> None:
    """A name read in an import says which module it is (``commands/`` mirrors the core's names
    on purpose): no two core modules share a name, and none is named like a package."""
    core = [p for p in PACKAGE.rglob("*.py") if "commands" not in p.parts]
    names = [p.stem for p in core if p.stem != "__init__"]
    packages = {p.parent.name for p in core if p.stem == "__init__"}
    assert sorted({n for n in names if names.count(n) > 1}) == []
    assert sorted(set(names) & packages) == []
