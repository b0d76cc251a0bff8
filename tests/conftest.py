"""Fixtures shared by the test modules."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.fixture()
def cli(capsysbinary: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch):
    """Run `gpt2 ...` in this process (no interpreter start-up): (exit code, stdout, stderr)."""
    from gpt2cli.cli import main

    def invoke(args: list[str]) -> subprocess.CompletedProcess:
        monkeypatch.setattr(sys, "argv", ["gpt2", *args])
        code = 0
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        captured = capsysbinary.readouterr()
        return subprocess.CompletedProcess(args, code, captured.out, captured.err)

    return invoke
