"""Arch backends of permalloc: every subpackage of this folder is a built-in arch.

Each registers under its folder name (``generic``, the fallback for every arch hook; ``x86``;
``arm64``), found by :func:`permalloc.plugin.pluginmanager.builtin_arches` without a list to
edit; a subpackage whose name starts with ``_`` is not an arch. docs/writing-an-arch-plugin.md
says what an arch folder holds.
"""
