"""The ``gpt2`` typer app: global options and the subcommands, each imported on first use."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

import typer
import typer.main
from typer._click import Command, Context, HelpFormatter
from typer._click.utils import make_default_short_help
from typer.core import TyperGroup

from gpt2cli import __version__
from gpt2cli.commands import COMMANDS

# Settings a command's help depends on, shared by the app and each command's own Typer.
_SETTINGS: dict[str, Any] = {"pretty_exceptions_enable": False, "rich_markup_mode": None}


def _load(name: str) -> Command:
    module = importlib.import_module(f"gpt2cli.commands.{name}")
    holder = typer.Typer(**_SETTINGS)
    module.register(holder)
    return typer.main.get_group(holder).commands[name]


class _Commands(Mapping[str, Command]):
    """The subcommands by name, each module imported on the first look-up of its command."""

    def __init__(self) -> None:
        self._loaded: dict[str, Command] = {}

    def __getitem__(self, name: str) -> Command:
        if name not in COMMANDS:
            raise KeyError(name)
        if name not in self._loaded:
            self._loaded[name] = _load(name)
        return self._loaded[name]

    def __contains__(self, name: object) -> bool:
        return name in COMMANDS

    def __iter__(self) -> Iterator[str]:
        return iter(COMMANDS)

    def __len__(self) -> int:
        return len(COMMANDS)


class LazyGroup(TyperGroup):
    """``gpt2``: lists its commands from ``COMMANDS``, imports one only to run it or show
    its help."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _Commands()  # type: ignore[assignment]

    def list_commands(self, ctx: Context) -> list[str]:
        return list(COMMANDS)

    def format_commands(self, ctx: Context, formatter: HelpFormatter) -> None:
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, make_default_short_help(text, limit)) for name, text in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


app = typer.Typer(
    name="gpt2",
    help=(
        "GPT-2 from corpus to results, as Unix filters: corpus, tokenize, pack, train, "
        "sample, score, eval, export, overlap. Data goes to stdout, messages and progress to "
        "stderr."
    ),
    cls=LazyGroup,
    no_args_is_help=True,
    add_completion=True,
    context_settings={"help_option_names": ["-h", "--help"]},
    **_SETTINGS,
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
