"""What a path is when it is not a regular file: input files are opened only when they are
(a FIFO blocks the open for ever, a device never ends)."""

from __future__ import annotations

import os
import stat

_KINDS = ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISSOCK, "a socket"), (stat.S_ISDIR, "a directory"))


def special_kind(path: str | os.PathLike[str]) -> str | None:
    """None for a regular file, else what it is ("a FIFO", "a directory", ...); OSError when
    it cannot be looked at (missing, no permission)."""
    mode = os.stat(path).st_mode
    if stat.S_ISREG(mode):
        return None
    return next((what for test, what in _KINDS if test(mode)), "not a regular file")
