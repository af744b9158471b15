"""Arch backends of permalloc: ``generic`` (the fallback for every arch hook) and ``x86``."""
