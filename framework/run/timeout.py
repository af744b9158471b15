"""Wall-time limits on runs (``--timeout``) and worker processes that die with their parent.

A plugin that loops forever must not hang the tool: in the process itself a run is stopped
by ``SIGALRM`` (the handler raises :class:`RunTimeout` wherever the run is), in a worker pool
by pebble, which kills the worker whose task overruns. Workers also ask the kernel to kill
them when the parent dies (``prctl(PR_SET_PDEATHSIG)``, Linux), so killing ``permalloc
compare`` leaves no simulation running.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
from collections.abc import Iterator

from permalloc.errors import PermallocError

PR_SET_PDEATHSIG = 1  # include/uapi/linux/prctl.h


class RunTimeout(PermallocError):
    """A run still going after ``--timeout`` seconds (names what was running)."""


def expired(what: str, seconds: float) -> RunTimeout:
    return RunTimeout(f"{what}: still running after --timeout {seconds:g} s; stopped")


@contextlib.contextmanager
def time_limit(seconds: float | None, what: str) -> Iterator[None]:
    """Raise :class:`RunTimeout` in this (main) thread if the block runs longer than ``seconds``."""
    if not seconds:
        yield
        return

    def expire(signum: int, frame: object) -> None:
        raise expired(what, seconds)

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def die_with_parent(parent: int) -> None:
    """Worker initializer: be killed when the parent dies (and exit now if it already has)."""
    with contextlib.suppress(OSError, AttributeError):  # not Linux: the pool still stops its workers
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    if os.getppid() != parent:
        os._exit(1)
