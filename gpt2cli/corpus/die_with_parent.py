"""Worker processes that end with the process that started them, even on its kill -9.

``die_with_parent()`` asks Linux to send SIGKILL to the calling process when its parent
exits (``prctl(PR_SET_PDEATHSIG)``); elsewhere it does nothing. The fork server that
``corpus extract -j N`` starts imports :mod:`gpt2cli.corpus.forkserver_guard`, which calls
it, and so does each worker, so a killed ``gpt2`` leaves no process holding its stderr.
"""

from __future__ import annotations

import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGKILL)
