"""Output files written atomically: a temporary file beside the target, renamed into place.

A write that fails half-way (a full disk, a file-size limit, an interrupt) leaves the old
file as it was and no temporary file behind; the error is one line naming the target and
the OS error. ``check_writable`` refuses a target that cannot be written before any work
is done.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

from permalloc.errors import OutputError

__all__ = ["atomic_write", "check_writable", "write_bytes", "write_text"]


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable(path: str | os.PathLike[str], directory: bool = False) -> None:
    """Refuse, before any work, a target that cannot be written: its folder is missing or
    not writable, or it is a folder where a file is wanted (or a file where a folder is)."""
    target = Path(path)
    if directory:
        existing = next((p for p in (target, *target.parents) if p.exists()), Path("."))
        if not existing.is_dir():
            raise OutputError(f"{target}: cannot create it: {existing} is not a directory")
        if not os.access(existing, os.W_OK | os.X_OK):
            raise OutputError(f"{target}: cannot create it in {existing}: permission denied")
        return
    parent = target.parent
    if not parent.is_dir():
        raise OutputError(f"{target}: cannot write: no such directory {parent}")
    if target.is_dir():
        raise OutputError(f"{target}: cannot write: is a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise OutputError(f"{target}: cannot write: permission denied in {parent}")


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str], mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """``with atomic_write(path) as fh: fh.write(...)``: ``path`` gets the whole content or
    keeps its old one. ``mode`` is "w" or "wb"; ``kwargs`` go to ``open``."""
    target = Path(path)
    check_writable(target)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, mode, **kwargs) as fh:
            yield fh
            fh.flush()
        os.chmod(tmp, 0o666 & ~_umask())  # what open() would have created, not mkstemp's 0600
        os.replace(tmp, target)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise OutputError(f"{target}: cannot write: {exc.strerror or exc} (the old file, if any, is kept)") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_text(path: str | os.PathLike[str], text: str) -> None:
    with atomic_write(path, "w", encoding="utf-8") as fh:
        fh.write(text)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    with atomic_write(path, "wb") as fh:
        fh.write(data)
