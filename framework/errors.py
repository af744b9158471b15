"""Errors that the CLI turns into one-line messages and a non-zero exit."""

from __future__ import annotations

import os


class PermallocError(Exception):
    """Base class: the message is one line and names the thing at fault."""


class SpecError(PermallocError):
    """An invalid machine spec, policy or scenario value (names the field)."""


class PluginError(PermallocError):
    """A plugin failed to load, raised inside a hook, or returned the wrong type."""


class PluginWarning(UserWarning):
    """A plugin left out of a registry (it raised or returned the wrong type); the CLI prints one
    line per plugin and hook and goes on without it."""


class ContractError(PermallocError):
    """A caller broke the perm_alloc contract (e.g. wrote to a finished allocation)."""


class OutOfMemory(PermallocError):
    """The simulated machine ran out of physical pages or of a virtual range."""


class InvariantViolation(PermallocError):
    """Strict mode: an invariant (W^X across aliases, no leaks) was broken."""


class OutputError(PermallocError):
    """An output file or directory that cannot be written (names the path and the OS error)."""


class InputError(PermallocError):
    """An input file that cannot be read as what it should be (names the file)."""


class IngestError(InputError):
    """A file ``permalloc ingest`` could not read as a module or kernel image. ``str()`` is one
    line: ``FILE: reason``."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        self.path = os.fspath(path)
        self.reason = " ".join(str(reason).split())  # one line, whatever the cause said
        super().__init__(self.path, self.reason)

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"

    def __reduce__(self) -> tuple[type, tuple[str, str]]:  # picklable across a process pool
        return (type(self), (self.path, self.reason))
