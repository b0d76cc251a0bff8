"""The gpt2 command as a whole: version, help, exit codes, one-line errors."""

import subprocess
import sys

from gpt2cli import __version__

COMMANDS = ("tokenize", "pack", "train", "sample", "score", "eval", "overlap")


def run(*args: str, stdin: bytes = b"") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "gpt2cli", *args], input=stdin, capture_output=True
    )


def test_version() -> None:
    result = run("--version")
    assert result.returncode == 0
    assert result.stdout.decode().strip() == f"gpt2cli {__version__}"


def test_help_lists_all_seven_commands() -> None:
    result = run("--help")
    assert result.returncode == 0
    text = result.stdout.decode()
    for command in COMMANDS:
        assert command in text


def test_each_command_has_help() -> None:
    for command in COMMANDS:
        result = run(command, "--help")
        assert result.returncode == 0, command
        assert b"Usage" in result.stdout


def test_unknown_option_is_a_usage_error() -> None:
    result = run("tokenize", "--no-such-option")
    assert result.returncode == 2


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
