"""Options shared by several subcommands, defined once so their help never drifts apart, and
the typer parameters of an options dataclass (:mod:`gpt2cli.option_fields`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Collection
from dataclasses import MISSING, fields
from typing import Any, TypeVar

import typer

from gpt2cli import option_fields

T = TypeVar("T")


def parameters(
    cls: type, unset_default: bool = False, only: Collection[str] | None = None
) -> list[inspect.Parameter]:
    """A typer option per flag of the options dataclass ``cls`` (of the fields ``only`` names,
    when given). ``unset_default``: every default None ("not given"), so that another source
    (a config file) can show through. A field without a default is a required option."""
    required = {
        f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING
    }
    out = []
    for flag in option_fields.flags(cls):
        if only is not None and flag.name not in only:
            continue
        if unset_default:
            default = typer.Option(
                None, *flag.names, show_default=False, help=flag.help, metavar=flag.metavar
            )
        else:
            default = typer.Option(
                ... if flag.name in required else flag.default,
                *flag.names,
                help=flag.help,
                metavar=flag.metavar,
                show_default=flag.show_default,
            )
        out.append(
            inspect.Parameter(
                flag.name, inspect.Parameter.KEYWORD_ONLY, annotation=flag.type, default=default
            )
        )
    return out


def with_fields(
    cls: type,
    runs: dict[str, str | None],
    unset_default: bool = False,
    only: Collection[str] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorate a typer command whose ``**given`` takes the flags of options dataclass ``cls``
    (those of the fields ``only`` names, when given; the others keep their defaults): its
    signature gets them, placed in --help by ``runs``, which maps the first field of a run
    of fields to the command's own parameter it follows (None: first of all)."""

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        own = [
            p.replace(kind=inspect.Parameter.KEYWORD_ONLY)
            for p in inspect.signature(command, eval_str=True).parameters.values()
            if p.kind is not inspect.Parameter.VAR_KEYWORD
        ]
        declared = parameters(cls, unset_default, only)
        names = [p.name for p in declared]
        starts = sorted(names.index(name) for name in runs)
        if not starts or starts[0] != 0:
            raise ValueError(f"runs must start with {names[0]}")
        for start, end in zip(starts, [*starts[1:], len(names)]):
            anchor = runs[names[start]]
            at = 0 if anchor is None else [p.name for p in own].index(anchor) + 1
            own[at:at] = declared[start:end]
        command.__signature__ = inspect.Signature(own, return_annotation=None)  # type: ignore[attr-defined]
        return command

    return decorate


def build(cls: type[T], given: dict[str, Any]) -> T:
    """An options dataclass from the command's ``**given`` (its flags' values)."""
    return cls(**{f.name: given[f.name] for f in fields(cls) if f.name in given})


def optional(*names: str, help: str, metavar: str | None = None) -> Any:
    """A typer option that may be left out (None), with no default shown in --help."""
    return typer.Option(None, *names, help=help, metavar=metavar, show_default=False)


def switch(*names: str, help: str) -> Any:
    """A flag that is off unless given."""
    return typer.Option(False, *names, help=help)


def inputs_argument(help: str) -> Any:
    """The input files of a command (none, or '-', reads stdin: ``help`` says so)."""
    return typer.Argument(None, help=help, show_default=False)


# Loading a model (sample, score, eval).
MODEL_HELP = (
    "A run directory (its newest complete checkpoint), a checkpoint directory, an HF-layout "
    "directory, or an HF model name in the local cache."
)


def model_option(default: Any = ..., metavar: str | None = None) -> Any:
    """--model/-m: required unless ``default`` is given."""
    return typer.Option(
        default, "--model", "-m", metavar=metavar, help=MODEL_HELP, show_default=False
    )


DEVICE = optional("--device", help="cpu, cuda, cuda:N or mps (default: cuda when available).")
DTYPE = optional(
    "--dtype",
    help="fp32, bf16, fp16, or int8 (CPU only: 8-bit weights) (default: bf16 on GPU, fp32 "
    "on CPU). On a CPU, fp16/bf16/int8 are the weights' precision; activations stay fp32.",
)

# Corpus stages (gpt2 corpus VERB).
STATS_FILE = optional(
    "--stats",
    help="Also write the stage's counters (documents in and out, drops by reason, MB/s) "
    "to this file as JSON.",
)
CORPUS_OUTPUT = optional(
    "--output", "-o", help="Write the JSON Lines here (atomically) instead of stdout."
)
