"""The ``gpt2`` typer app: global options and the subcommands, each imported on first use."""

from __future__ import annotations

import importlib
from collections.abc import Iterator, Mapping
from typing import Any

import typer
import typer.main
from typer.core import TyperCommand, TyperGroup

from gpt2cli import __version__
from gpt2cli.commands import COMMANDS

# A command or a group of verbs (`gpt2 corpus`), as typer builds it.
Command = TyperCommand | TyperGroup

# Settings a command's help depends on, shared by the app and each command's own Typer.
_SETTINGS: dict[str, Any] = {"pretty_exceptions_enable": False, "rich_markup_mode": None}


class VerbGroup(TyperGroup):
    """A group that, given no verb, prints its help on stderr and exits 2 (a usage error)."""

    def parse_args(self, ctx: typer.Context, args: list[str]) -> Any:
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            typer.echo(ctx.get_help(), err=True, color=ctx.color)
            raise typer.Exit(2)
        return super().parse_args(ctx, args)


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


def short_help(text: str, limit: int) -> str:
    """``text`` up to its first sentence's end, or as many words of it as fit ``limit``
    characters with "...": what the command's own short help would say."""
    words = text.split()
    for count in range(1, len(words) + 1):
        line = " ".join(words[:count])
        if len(line) > limit:
            break
        if line.endswith("."):
            return line
        if len(line) == limit and count < len(words):
            break
    else:
        return " ".join(words)
    for kept in range(count - 1, 0, -1):
        line = " ".join(words[:kept])
        if len(line) + len("...") <= limit:
            return line + "..."
    return "..."


class LazyGroup(VerbGroup):
    """``gpt2``: lists its commands from ``COMMANDS``, imports one only to run it or show
    its help."""

    def __init__(self, **attrs: Any) -> None:
        super().__init__(**attrs)
        self.commands = _Commands()  # type: ignore[assignment]

    def list_commands(self, ctx: typer.Context) -> list[str]:
        return list(COMMANDS)

    def format_commands(self, ctx: typer.Context, formatter: Any) -> None:
        limit = formatter.width - 6 - max(len(name) for name in COMMANDS)
        rows = [(name, short_help(text, limit)) for name, text in COMMANDS.items()]
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
