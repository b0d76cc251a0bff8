"""What the fault tests share: the one error line a failed `gpt2` run must write."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def one_error_line(run: Any, code: int = 1) -> str:
    """The only non-blank stderr line of ``run`` (a conftest ``Run``), which exited ``code``."""
    assert run.code == code, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, run.stderr
    return lines[0]


def pack_refuses(gpt2: Any, path: Path, data: bytes, *options: str) -> str:
    """Write ``data`` to ``path``, pack it: the one error line, and no output directory made."""
    path.write_bytes(data)
    out = path.parent / "out"
    line = one_error_line(gpt2("pack", *options, "-o", out, path))
    assert not out.exists()
    return line
