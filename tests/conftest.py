"""Fixtures shared by the test modules."""

from __future__ import annotations

import io
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import pytest


class Run(NamedTuple):
    """The outcome of one `gpt2 ...`: exit status, stdout bytes, stderr text."""

    code: int
    stdout: bytes
    stderr: str


@pytest.fixture(scope="session")
def gpt2() -> Callable[..., Run]:
    """Run `gpt2 ARGS` through the real entry point in this process (no interpreter start-up),
    ``stdin`` piped in, and restore what ``main`` changes (streams, argv, SIGPIPE, env)."""
    from gpt2cli.cli import main

    def invoke(*args: str | Path, stdin: bytes = b"") -> Run:
        saved = sys.argv, sys.stdin, sys.stdout, sys.stderr
        saved_env = os.environ.get("THP_MEM_ALLOC_ENABLE")
        sigpipe = signal.getsignal(signal.SIGPIPE) if hasattr(signal, "SIGPIPE") else None
        out, err = io.BytesIO(), io.BytesIO()
        sys.argv = ["gpt2", *map(str, args)]
        sys.stdin = io.TextIOWrapper(io.BytesIO(stdin), encoding="utf-8")
        sys.stdout = io.TextIOWrapper(out, encoding="utf-8", write_through=True)
        sys.stderr = io.TextIOWrapper(err, encoding="utf-8", write_through=True)
        code = 0
        try:
            main()
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            stdout, stderr = out.getvalue(), err.getvalue()  # before the wrappers close them
            sys.argv, sys.stdin, sys.stdout, sys.stderr = saved
            if sigpipe is not None:
                signal.signal(signal.SIGPIPE, sigpipe)
            if saved_env is None:
                os.environ.pop("THP_MEM_ALLOC_ENABLE", None)
        return Run(code, stdout, stderr.decode("utf-8", "replace"))

    return invoke


@pytest.fixture(params=["compiled", "torch"])
def kernel(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The CPU kernels a test runs the model through: the compiled matrix-vector kernel (where
    it was built and the CPU runs it) or torch's (the fallback; FBGEMM for packed weights)."""
    from gpt2cli.model import compiled_kernels

    if request.param == "compiled" and not compiled_kernels.available():
        pytest.skip("the compiled kernel is not built here (see test_kernels_are_built)")
    if request.param == "torch":
        monkeypatch.setattr(compiled_kernels, "_KERNELS", None)
    return request.param
