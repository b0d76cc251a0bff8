"""``gpt2 corpus``: the WebText recipe as verbs (this branch: filter and dedup only)."""

from __future__ import annotations

import typer

from gpt2cli.commands import corpus_clean

NAME = "corpus"


def register(app: typer.Typer) -> None:
    group = typer.Typer(
        name=NAME,
        help="Build a WebText-style corpus: filter and de-duplicate JSON Lines documents.",
        no_args_is_help=True,
        rich_markup_mode=None,
    )
    corpus_clean.register(group)
    app.add_typer(group, name=NAME)
