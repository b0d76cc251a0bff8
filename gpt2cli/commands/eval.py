"""`gpt2 eval` (being built: see its issue)."""

import typer

NAME = "eval"


def register(app: typer.Typer) -> None:
    @app.command(NAME, help="(not built yet)")
    def _placeholder() -> None:
        raise typer.Exit(1)
