"""The ``gpt2`` typer app: global options, the seven subcommands, and the one error handler."""

from __future__ import annotations

import os
import signal
import sys

import typer

from gpt2cli import __version__
from gpt2cli.commands import COMMAND_MODULES
from gpt2cli.errors import Gpt2Error

app = typer.Typer(
    name="gpt2",
    help=(
        "GPT-2 from corpus to results, as Unix filters: tokenize, pack, train, sample, "
        "score, eval, overlap. Data goes to stdout, messages and progress to stderr."
    ),
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version(value: bool) -> None:
    if value:
        print(f"gpt2cli {__version__}")
        raise typer.Exit()


@app.callback()
def _global(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """GPT-2 from corpus to results, as Unix filters."""


for _module in COMMAND_MODULES:
    _module.register(app)


def _command_name(argv: list[str]) -> str:
    names = {module.NAME for module in COMMAND_MODULES}
    return next((arg for arg in argv if arg in names), "")


def main() -> None:
    """Console-script entry point: run the app, turning project errors into one line."""
    # Die quietly like any Unix filter when the reader of our stdout goes away (`| head`).
    if hasattr(signal, "SIGPIPE"):
        signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    # PyTorch's own switch, read at its first allocation: large tensors on transparent huge
    # pages (Linux), which a CPU streams faster (a decoding step reads every weight).
    os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
    try:
        app(prog_name="gpt2")
    except Gpt2Error as error:
        command = _command_name(sys.argv[1:])
        prefix = f"gpt2 {command}" if command else "gpt2"
        print(f"{prefix}: error: {error}", file=sys.stderr)
        sys.exit(error.exit_code)
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        sys.exit(130)
