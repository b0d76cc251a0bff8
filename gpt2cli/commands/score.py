"""`gpt2 score` (being built: see its issue)."""

import typer

NAME = "score"


def register(app: typer.Typer) -> None:
    @app.command(NAME, help="(not built yet)")
    def _placeholder() -> None:
        raise typer.Exit(1)
