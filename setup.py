"""The package list, read from the folders of setup.cfg's ``package_dir``.

Every folder with an ``__init__.py`` under ``framework/``, ``arches/`` and ``plugins/`` is a
package (``build`` folders left out), so an arch added to ``arches/`` is shipped without a
list to edit. Everything else is declared in setup.cfg.
"""

from __future__ import annotations

import configparser
from pathlib import Path

ROOT = Path(__file__).resolve().parent


def package_dirs() -> dict[str, str]:
    """setup.cfg's ``package_dir``: import package -> folder."""
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    pairs = (line.split("=", 1) for line in cfg["options"]["package_dir"].strip().splitlines())
    return {name.strip(): folder.strip() for name, folder in pairs}


def packages() -> list[str]:
    found = set()
    for package, folder in package_dirs().items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            if "build" in rel.parts or "__pycache__" in rel.parts:
                continue
            found.add(".".join([package, *rel.parts]) if rel.parts else package)
    return sorted(found)


if __name__ == "__main__":
    from setuptools import setup

    setup(packages=packages())
