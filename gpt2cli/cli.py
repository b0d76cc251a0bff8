"""The ``gpt2`` entry point: signals, environment, and the one error handler around the app.

Only the standard library is imported before ``main`` has caught Ctrl-C; the app and its
commands (``gpt2cli.app``) are imported inside it.
"""

from __future__ import annotations

import os
import signal
import sys


def _command_name(argv: list[str]) -> str:
    from gpt2cli.commands import COMMANDS

    return next((arg for arg in argv if arg in COMMANDS), "")


def main() -> None:
    """Console-script entry point: run the app, turning project errors into one line."""
    try:
        # Die quietly like any Unix filter when the reader of our stdout goes away (`| head`).
        if hasattr(signal, "SIGPIPE"):
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        # PyTorch's own switch, read at its first allocation: large tensors on transparent huge
        # pages (Linux), which a CPU streams faster (a decoding step reads every weight).
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
        from gpt2cli.app import app
        from gpt2cli.errors import Gpt2Error

        try:
            app(prog_name="gpt2")
        except Gpt2Error as error:
            command = _command_name(sys.argv[1:])
            prefix = f"gpt2 {command}" if command else "gpt2"
            print(f"{prefix}: error: {error}", file=sys.stderr)
            sys.exit(error.exit_code)
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        sys.exit(130)
