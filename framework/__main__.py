"""``python -m permalloc``: the command line."""

from permalloc.cli import _main

_main()
