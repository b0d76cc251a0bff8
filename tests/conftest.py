"""Fixtures shared by the test modules."""

from __future__ import annotations

import io
import subprocess
import sys

import pytest


@pytest.fixture()
def cli(capsysbinary: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch):
    """Run `gpt2 ...` in this process (no interpreter start-up), ``stdin`` piped in:
    (exit code, stdout, stderr)."""
    from gpt2cli.cli import main

    def invoke(args: list[str], stdin: bytes | None = None) -> subprocess.CompletedProcess:
        monkeypatch.setattr(sys, "argv", ["gpt2", *args])
        if stdin is not None:
            monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
        code = 0
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        captured = capsysbinary.readouterr()
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)

    return invoke
