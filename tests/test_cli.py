"""The gpt2 command as a whole: version, help, exit codes, one-line errors."""

import ast
import importlib
import subprocess
import sys
from pathlib import Path

from gpt2cli import __version__


def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gpt2cli", *args], input=stdin, capture_output=True
    )


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.decode().strip() == f"gpt2cli {__version__}"


def command_modules() -> list[str]:
    """The commands as their modules declare them (``NAME = "..."`` in gpt2cli/commands/*.py),
    read from the source, not from the table the app lists."""
    names = []
    for path in sorted(
        (Path(__file__).resolve().parent.parent / "gpt2cli" / "commands").glob("*.py")
    ):
        for node in ast.parse(path.read_text(encoding="utf-8")).body:
            if isinstance(node, ast.Assign) and [ast.unparse(t) for t in node.targets] == ["NAME"]:
                names.append(ast.literal_eval(node.value))
    return names


def listed_commands() -> list[str]:
    """The first word of each line of the Commands section of `gpt2 --help`."""
    result = run("--help")
    assert result.returncode == 0 and result.stderr == b""
    section = result.stdout.decode().split("\nCommands:\n", 1)[1]
    return [line.split()[0] for line in section.splitlines() if line.startswith("  ")]


def test_help_lists_exactly_the_command_modules() -> None:
    listed = listed_commands()
    assert len(listed) == len(set(listed))
    assert sorted(listed) == sorted(command_modules())


def test_each_command_answers_help_with_its_own_usage() -> None:
    for command in listed_commands():
        result = run(command, "--help")
        assert result.returncode == 0 and result.stderr == b"", command
        usage = result.stdout.decode().splitlines()[0]
        assert usage.startswith(f"Usage: gpt2 {command} [OPTIONS]"), usage


def test_unknown_option_is_a_usage_error() -> None:
    result = run("tokenize", "--no-such-option")
    assert result.returncode == 2
    assert result.stdout == b""
    assert result.stderr.decode().splitlines() == [
        "gpt2 tokenize: error: no such option --no-such-option (see gpt2 tokenize --help)"
    ]


def test_runtime_error_is_one_line_without_traceback() -> None:
    result = run("tokenize", "/no/such/file.txt")
    assert result.returncode == 1
    lines = result.stderr.decode().strip().splitlines()
    assert lines == ["gpt2 tokenize: error: /no/such/file.txt: no such file"]


def test_start_up_does_not_import_torch() -> None:
    """Every command pays for what the app imports at start-up: torch only when needed."""
    code = "import sys, gpt2cli.cli; print('torch' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.stdout.strip() == "False"


LIST_MODULES = """
import runpy, sys
try:
    runpy.run_module("gpt2cli", run_name="__main__")
finally:
    print("modules:", *sys.modules, file=sys.stderr)
"""


def imported_modules(*args: str) -> set[str]:
    """The modules `python -m gpt2cli ARGS` has imported when it exits."""
    result = subprocess.run([sys.executable, "-c", LIST_MODULES, *args], capture_output=True)
    assert result.returncode == 0, result.stderr
    return set(result.stderr.decode().rsplit("modules:", 1)[1].split())


HEAVY = ("numpy", "torch", "gpt2cli.evaluate.tasks")


def test_version_and_help_import_no_command() -> None:
    for args in (["--version"], ["--help"]):
        modules = imported_modules(*args)
        assert "typer" in modules  # the record is read
        assert [name for name in HEAVY if name in modules] == [], args
        assert not any(name.startswith("gpt2cli.commands.") for name in modules), args


def test_a_command_imports_only_its_own_module() -> None:
    modules = imported_modules("tokenize", "--help")
    assert "gpt2cli.commands.tokenize" in modules
    assert "torch" not in modules and "gpt2cli.evaluate.tasks" not in modules
    assert {name for name in modules if name.startswith("gpt2cli.commands.")} == {
        "gpt2cli.commands.tokenize",
        "gpt2cli.commands.options",
    }


def test_the_command_table_is_every_command_with_its_own_help() -> None:
    """`gpt2 --help` lists COMMANDS without importing them: it must say what the commands say."""
    import pkgutil

    import typer.main

    import gpt2cli.commands
    from gpt2cli.app import app
    from gpt2cli.commands import COMMANDS

    modules = [
        name
        for _, name, _ in pkgutil.iter_modules(gpt2cli.commands.__path__)
        if hasattr(importlib.import_module(f"gpt2cli.commands.{name}"), "NAME")
    ]
    assert sorted(COMMANDS) == sorted(modules)
    root = typer.main.get_command(app)
    for name, text in COMMANDS.items():
        assert root.commands[name].get_short_help_str(limit=10_000) == text, name


INTERRUPT_AT_IMPORT = """
import sys

class Interrupt:
    def find_spec(self, name, path=None, target=None):
        if name == sys.argv[1]:
            raise KeyboardInterrupt
"""


def test_ctrl_c_during_start_up_exits_130_without_traceback() -> None:
    entry_points = {
        "gpt2": "from gpt2cli.cli import main\nmain()",
        "python -m gpt2cli": "import runpy\nrunpy.run_module('gpt2cli', run_name='__main__')",
    }
    for entry, start in entry_points.items():
        for module in ("typer", "gpt2cli.app", "gpt2cli.commands.tokenize", "numpy"):
            code = f"{INTERRUPT_AT_IMPORT}\nsys.meta_path.insert(0, Interrupt())\n"
            code += f"sys.argv = ['gpt2', 'tokenize', '--help']\n{start}"
            result = subprocess.run([sys.executable, "-c", code, module], capture_output=True)
            assert result.returncode == 130, (entry, module, result.stderr)
            assert result.stderr.strip() == b"", (entry, module, result.stderr)
            assert result.stdout == b"", (entry, module)


def test_a_value_rule_declared_with_its_option_names_the_flag_and_the_value(gpt2, tmp_path) -> None:
    """The rules of gpt2cli.option_fields: one line, exit 2, before any work (no model
    loaded, no directory made); NaN breaks every rule (it is no number in any range)."""
    cases = [
        (
            ("pack", "--level", "40", "-o", tmp_path / "p"),
            "--level must be between 1 and 22, not 40",
        ),
        (("sample", "-m", "no-model", "-n", "0", "hi"), "--num-samples must be positive, not 0"),
        (
            ("eval", "lambada", "-m", "no-model", "--stride", "0"),
            "--stride must be at least 1, not 0",
        ),
        (("train", "-o", tmp_path / "t", "--lr", "nan"), "--lr must be a finite number, not nan"),
        (
            ("corpus", "fetch", "-o", tmp_path / "f", "--delay", "nan"),
            "--delay must be a finite number, not nan",
        ),
        (
            ("corpus", "filter", "--lang-score", "1.5"),
            "--lang-score must be between 0 and 1, not 1.5",
        ),
    ]
    for args, message in cases:
        result = gpt2(*args)
        command = " ".join(args[:2]) if args[0] == "corpus" else args[0]
        assert result.code == 2, (args, result.stderr)
        assert result.stderr.splitlines() == [f"gpt2 {command}: error: {message}"]
    assert not any((tmp_path / name).exists() for name in ("p", "t", "f"))
