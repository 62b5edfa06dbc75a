"""Processes that must never outlive the process that wanted them.

A native runtime runs a model in a child process (:mod:`sweep.runtimes.isolated`).
If the job or ``sweep-profile`` that started it is killed (SIGKILL, an OOM kill, a
closed terminal), nothing runs its clean-up code, and a child spinning in a model
that loops forever would spin on at 100 % CPU. Linux can tie a process's life to
its parent's: ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` makes the kernel kill it when
the parent dies. The children come from a fork server, so both ask for it: the
fork server (when it starts, :mod:`sweep.runtimes.forkserver_preload`) and each
child. The signal follows the parent *thread* that forked: the fork server is
started by the thread that first runs an isolated call (a job's main thread).
"""

from __future__ import annotations

import ctypes
import os
import signal

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


def die_with_parent() -> bool:
    """Ask the kernel to SIGKILL this process when its parent dies; False where it cannot
    (not Linux). A parent that died before the request leaves an orphan: it exits now."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    if os.getppid() != parent:  # reparented between the two calls: the parent is gone
        os._exit(1)
    return True
