"""The three folders install as one package, and tests use the installed copy."""

from __future__ import annotations

import configparser
import fnmatch
import runpy
import sys
from pathlib import Path

import permalloc

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"permalloc": "framework", "permalloc.arches": "arches", "permalloc.plugins": "plugins"}


def _declared() -> list[str]:
    """What setup.py gives setuptools (it reads the folders: no list to keep)."""
    return runpy.run_path(str(ROOT / "setup.py"), run_name="setup")["packages"]()


def _on_disk() -> set[str]:
    found = set()
    for package, folder in FOLDERS.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(ROOT / folder)
            found.add(".".join([package, *rel.parts]) if rel.parts else package)
    return found


def test_package_list_matches_the_folders():
    assert set(_declared()) == _on_disk()
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert "packages" not in cfg["options"]  # no list of packages to keep in step with the folders
    assert dict(runpy.run_path(str(ROOT / "setup.py"), run_name="setup")["package_dirs"]()) == FOLDERS


def test_package_data_covers_every_data_folder():
    # the bundled workloads of the module loader and of each arch are read from the installed
    # package; one pattern for every package, so an arch's data/ ships without a setup.cfg line
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    patterns = [p.strip() for p in cfg["options.package_data"]["*"].split(",")]
    data = [path for folder in FOLDERS.values() for path in (ROOT / folder).rglob("data/*") if path.is_file()]
    assert any("arches" in path.parts for path in data)
    assert [path for path in data
            if not any(fnmatch.fnmatch(path.name, pattern.removeprefix("data/")) for pattern in patterns)] == []


def test_package_data_covers_every_skeleton_template():
    # permalloc new-plugin reads them from the installed package
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    patterns = [p.strip() for p in cfg["options.package_data"]["permalloc"].split(",")]
    shipped = {path for pattern in patterns for path in (ROOT / "framework").glob(pattern)}
    templates = {path for path in (ROOT / "framework" / "skeletons").rglob("*") if path.is_file()}
    assert templates and templates == shipped - {ROOT / "framework" / "py.typed"}


def test_the_typed_marker_is_shipped():
    # PEP 561: type checkers read permalloc.api's hints from the installed package
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    assert "py.typed" in [p.strip() for p in cfg["options.package_data"]["permalloc"].split(",")]
    assert (ROOT / "framework" / "py.typed").is_file()


def test_one_copy_of_the_package():
    import permalloc.arches.generic as generic
    from permalloc.plugin.pluginmanager import discover

    assert {r.name: r.plugin for r in discover()}["generic"] is generic
    for name in ("framework", "arches", "plugins"):
        assert name not in sys.modules  # the raw folders were never imported on their own
    assert Path(permalloc.__file__).parent.name in ("permalloc", "framework")
