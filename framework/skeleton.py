"""Plugin package skeletons (``permalloc new-plugin``), rendered from the templates in
``skeletons/``.

``skeletons/common/`` holds the files of every package, ``skeletons/KIND/`` those of one kind;
each file ends in ``.tmpl``, a path part ``PACKAGE`` becomes the import package's name and the
text is a :class:`string.Template` of :func:`fields`.
"""

from __future__ import annotations

import os
import re
import shutil
from importlib.resources import files
from importlib.resources.abc import Traversable
from pathlib import Path
from string import Template

from permalloc.errors import OutputError, SpecError
from permalloc.plugin.pluginmanager import discover

#: What the example hook implementation of each kind of package does.
KINDS: dict[str, str] = {
    "arch": "a new arch that finishes RX allocations with one set_memory_rox",
    "consumer": "counts the modules whose text comes live (permalloc_module_coming)",
    "policy": "registers a policy: 6.12 with one JIT allocation per BPF program",
}

# an entry point, arch and policy name that is also a distribution and import name once
# prefixed: lower case, digits, single - or _ between words
NAME = re.compile(r"[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*")
SUFFIX = ".tmpl"


def fields(name: str, kind: str) -> dict[str, str]:
    """The template fields of package ``name`` of ``kind``; refuses a name that is not a
    valid plugin name or that an installed plugin already has."""
    if not NAME.fullmatch(name):
        raise SpecError(f"plugin name {name!r}: use lower-case letters, digits and single - or _ between words, "
                        "starting with a letter (e.g. myarch, my-policy)")
    taken = {record.name for record in discover()}
    if name in taken:
        raise SpecError(f"plugin name {name!r} is taken by an installed plugin (permalloc plugins lists them)")
    words = re.split(r"[-_]", name)
    return {
        "name": name,
        "kind": kind,
        "package": "permalloc_" + "_".join(words),
        "dist": "permalloc-" + "-".join(words),
        "camel": "".join(word.capitalize() for word in words),
        "description": f"permalloc {kind} plugin: {KINDS[kind]}",
    }


def _templates(folder: Traversable, relative: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Traversable]]:
    found = []
    for entry in sorted(folder.iterdir(), key=lambda e: e.name):
        if entry.is_dir():
            found += _templates(entry, (*relative, entry.name))
        elif entry.name.endswith(SUFFIX):
            found.append(((*relative, entry.name.removesuffix(SUFFIX)), entry))
    return found


def render(name: str, kind: str) -> dict[str, str]:
    """The files of the package, by path relative to its folder."""
    values = fields(name, kind)
    root = files("permalloc") / "skeletons"
    rendered = {}
    for folder in ("common", kind):
        for parts, template in _templates(root / folder):
            path = "/".join(parts).replace("PACKAGE", values["package"])
            rendered[path] = Template(template.read_text()).substitute(values)
    return rendered


def write_package(name: str, kind: str, target: str | os.PathLike[str] | None = None) -> Path:
    """Write the package ``name`` of ``kind`` into the new folder ``target`` (default:
    ``./NAME``), whole or not at all; returns the folder."""
    folder = Path(target if target is not None else name)
    rendered = render(name, kind)
    try:
        folder.mkdir()
    except FileExistsError:
        raise OutputError(f"{folder}: already exists (choose another NAME or -o DIR)") from None
    try:
        for path, text in rendered.items():
            (folder / path).parent.mkdir(parents=True, exist_ok=True)
            (folder / path).write_text(text)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return folder
