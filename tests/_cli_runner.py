"""`gpt2 ...` through typer's CliRunner, reporting project errors as cli.main would."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from gpt2cli.cli import app
from gpt2cli.errors import Gpt2Error

runner = CliRunner()


class Run:
    """The outcome of one in-process `gpt2 ...` call, as cli.main would report it."""

    def __init__(self, result) -> None:
        self.stdout = result.stdout_bytes
        self.stderr = result.stderr
        error = result.exception
        if isinstance(error, Gpt2Error):
            self.code = error.exit_code
            self.stderr += f"error: {error}\n"
        elif error is not None and not isinstance(error, SystemExit):
            raise error
        else:
            self.code = result.exit_code


def gpt2(*args: str | Path, stdin: bytes | None = None) -> Run:
    return Run(runner.invoke(app, [str(a) for a in args], input=stdin))
