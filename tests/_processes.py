"""Running a Python module as a child process, the way the fidelity and distributed tests do."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path


def run_module(
    python: str, module: str, *args: str | Path, env: Mapping[str, str], timeout: float
) -> subprocess.CompletedProcess[str]:
    """``python -m module args`` with ``env`` added to this environment; it must exit 0."""
    result = subprocess.run(
        [python, "-m", module, *map(str, args)],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result
