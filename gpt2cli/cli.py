"""The ``gpt2`` entry point: signals, environment, and the one error handler around the app.

Only the standard library is imported before ``main`` has caught Ctrl-C; the app and its
commands (``gpt2cli.app``) are imported inside it.
"""

from __future__ import annotations

import errno
import io
import os
import signal
import sys
from typing import Any, NoReturn


def _command_name(argv: list[str]) -> str:
    """``tokenize``, or ``corpus filter`` for a command with verbs: what errors are prefixed by."""
    from gpt2cli.commands import COMMANDS, GROUPS

    for i, arg in enumerate(argv):
        if arg in COMMANDS:
            verb = argv[i + 1] if i + 1 < len(argv) else ""
            if arg in GROUPS and verb[:1].isalpha():
                return f"{arg} {verb}"
            return arg
    return ""


class _Stdout(io.BufferedWriter):
    """The process's stdout, whose write errors name it (an OSError raised by a write to a
    pipe or a full device has no file name of its own)."""

    def write(self, data: Any) -> int:
        try:
            return super().write(data)
        except OSError as error:
            error.filename = error.filename or "stdout"
            raise

    def flush(self) -> None:
        try:
            super().flush()
        except OSError as error:
            error.filename = error.filename or "stdout"
            raise


def _prepare_streams() -> None:
    """A closed stdin/stdout (`>&-`) would be taken by the next file we open, so our data
    would land in it: hold 0 and 1 with /dev/null opened the wrong way round (using them
    fails with EBADF, reported like any I/O error) and 2 with /dev/null for writing."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            held = os.open(os.devnull, os.O_RDONLY if fd == 1 else os.O_WRONLY)
            if held != fd:
                os.dup2(held, fd)
                os.close(held)
    if sys.stdin is None:
        sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    if sys.stderr is None:
        sys.stderr = open(2, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    old = sys.stdout
    if old is sys.__stdout__:  # the process's own stdout, not a test's capture
        if old is not None:
            old.flush()
        sys.stdout = io.TextIOWrapper(
            _Stdout(io.FileIO(1, "w", closefd=False)),
            encoding=getattr(old, "encoding", "utf-8"),
            errors=getattr(old, "errors", "strict"),
            line_buffering=os.isatty(1),
        )


def _drop_stdout() -> None:
    """Point fd 1 at /dev/null, so that the interpreter's last flush of what stdout still
    buffers neither fails nor prints a second error."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)


def _usage_message(error: Any, prefix: str) -> tuple[str, str]:
    """A usage error of the parser as (command path, one line with its suggestion)."""
    from difflib import get_close_matches

    from gpt2cli.commands import COMMANDS

    ctx = error.ctx
    where = ctx.command_path if ctx is not None else prefix
    suggestions: list[str] = []
    if hasattr(error, "possibilities"):  # an unknown option
        message = f"no such option {error.option_name}"
        suggestions = sorted(error.possibilities or [])
    elif error.message.startswith("No such command"):
        name = error.message.split("'")[1] if "'" in error.message else ""
        message = f"no such command {name!r}"
        suggestions = get_close_matches(name, list(COMMANDS))
    else:
        message = error.format_message().strip().rstrip(".")
        message = message[:1].lower() + message[1:]
    see = f"see {where} --help"
    if suggestions:
        see = f"did you mean {' or '.join(suggestions)}? {see}"
    return where, f"{message} ({see})"


def _fail(prefix: str, message: str, code: int) -> NoReturn:
    print(f"{prefix}: error: {message}".replace("\n", " "), file=sys.stderr)
    sys.exit(code)


def _run() -> int:
    import typer

    from gpt2cli.app import app
    from gpt2cli.errors import Gpt2Error, os_error_message

    command = _command_name(sys.argv[1:])
    prefix = f"gpt2 {command}" if command else "gpt2"
    try:
        code = app(prog_name="gpt2", standalone_mode=False)
        sys.stdout.flush()
    except Gpt2Error as error:
        _fail(prefix, str(error), error.exit_code)
    except typer.TyperException as error:  # the parser's errors: usage ones exit 2
        if error.exit_code == 2 and hasattr(error, "ctx"):
            where, message = _usage_message(error, prefix)
            _fail(where, message, 2)
        _fail(prefix, error.format_message(), error.exit_code)
    except typer.Abort:
        raise KeyboardInterrupt from None
    except OSError as error:
        if error.errno == errno.EPIPE:
            _drop_stdout()
            return 128 + signal.SIGPIPE
        if error.filename == "stdout":
            _drop_stdout()
        message = os_error_message(error)
        _fail(prefix, message, 1)
    return code if isinstance(code, int) else 0


def main() -> None:
    """Console-script entry point: run the app, turning errors into one line."""
    try:
        _prepare_streams()
        # Die quietly like any Unix filter when the reader of our stdout goes away (`| head`).
        if hasattr(signal, "SIGPIPE"):
            signal.signal(signal.SIGPIPE, signal.SIG_DFL)
        # Past a file-size limit (`ulimit -f`), a write fails with EFBIG (one error line) instead
        # of the process being killed by SIGXFSZ.
        if hasattr(signal, "SIGXFSZ"):
            signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        # PyTorch's own switch, read at its first allocation: large tensors on transparent huge
        # pages (Linux), which a CPU streams faster (a decoding step reads every weight).
        os.environ.setdefault("THP_MEM_ALLOC_ENABLE", "1")
        sys.exit(_run())
    except KeyboardInterrupt:
        print("", file=sys.stderr)
        sys.exit(130)
