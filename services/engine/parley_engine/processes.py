"""Worker processes that cannot outlive the engine.

An engine killed with SIGKILL runs no shutdown code, and its spawned workers (speech and analysis) would go on as
orphans holding memory and the model. On Linux the kernel can send a signal to a process when its parent dies
(``prctl(PR_SET_PDEATHSIG)``); each worker asks for SIGKILL at start, and exits at once if the engine is already
gone. The pools submit work from the event loop's thread, which lives as long as the engine: the signal follows
the death of the thread that spawned the worker, so it must never be a short-lived one.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys

PR_SET_PDEATHSIG = 1  # from <sys/prctl.h>


def die_with_parent(parent_pid: int) -> None:
    """Called first in a worker process: SIGKILL when ``parent_pid`` dies (Linux); nothing elsewhere."""
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent_pid:  # the engine died before the signal was asked for
        os._exit(1)
