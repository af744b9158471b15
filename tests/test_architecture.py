"""The import direction of docs/architecture.md ("Import direction"), read from the source.

Every module of the three folders is parsed (not imported); every ``import`` in it counts,
function-level ones included. Imports under ``if TYPE_CHECKING:`` are annotations only and
may point upwards where the rules say so.
"""

from __future__ import annotations

import ast
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FOLDERS = {"framework": "permalloc", "arches": "permalloc.arches", "plugins": "permalloc.plugins"}


@dataclass(frozen=True)
class Import:
    module: str  # the importing module
    target: str  # what it imports (a module, or a package for ``from package import name``)
    line: int
    annotation_only: bool  # under ``if TYPE_CHECKING:``

    def __str__(self) -> str:
        return f"{self.module}:{self.line} imports {self.target}"


def _module_name(path: Path) -> tuple[str, bool]:
    rel = path.relative_to(ROOT)
    parts = [FOLDERS[rel.parts[0]], *rel.with_suffix("").parts[1:]]
    is_package = parts[-1] == "__init__"
    if is_package:
        parts.pop()
    return ".".join(parts), is_package


def _sources() -> list[Path]:
    return sorted(p for folder in FOLDERS for p in (ROOT / folder).rglob("*.py")
                  if "build" not in p.relative_to(ROOT).parts)


def _imports() -> list[Import]:
    found: list[Import] = []
    for path in _sources():
        module, is_package = _module_name(path)
        tree = ast.parse(path.read_text(), str(path))
        typing_only: set[int] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                typing_only.update(id(child) for stmt in node.body for child in ast.walk(stmt))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    package = module.split(".") if is_package else module.split(".")[:-1]
                    package = package[: len(package) - node.level + 1]
                    base = ".".join(package + ([node.module] if node.module else []))
                else:
                    base = node.module or ""
                # ``from permalloc import machine`` imports the module permalloc.machine
                targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
            else:
                continue
            for target in targets:
                if target == "permalloc" or target.startswith("permalloc."):
                    found.append(Import(module, target, node.lineno, id(node) in typing_only))
    return found


IMPORTS = _imports()


def _within(name: str, *packages: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in packages)


def _real(name: str) -> bool:
    """Whether ``name`` is a module or package of the tree (not a name imported from one)."""
    parts = name.split(".")
    for folder, package in FOLDERS.items():
        base = package.split(".")
        if parts[: len(base)] == base:
            rest = parts[len(base):]
            path = ROOT / folder / Path(*rest) if rest else ROOT / folder
            if path.with_suffix(".py").exists() or (path / "__init__.py").exists():
                return True
    return False


def _violations(importers: tuple[str, ...], forbidden: tuple[str, ...], allowed: tuple[str, ...] = (),
                for_annotations: tuple[str, ...] = ()) -> list[str]:
    """Imports by modules of ``importers`` of real modules in ``forbidden``, except those in
    ``allowed``, and those in ``for_annotations`` under ``if TYPE_CHECKING:``."""
    return [str(imp) for imp in IMPORTS
            if _within(imp.module, *importers) and _within(imp.target, *forbidden) and _real(imp.target)
            and not _within(imp.target, *allowed)
            and not (imp.annotation_only and _within(imp.target, *for_annotations))]


ARCHES_AND_PLUGINS = ("permalloc.arches", "permalloc.plugins")
MACHINE = ("permalloc.machine", "permalloc.boot", "permalloc.memstate")
TOP = ("permalloc.cli", "permalloc.testing", "permalloc.pytest_plugin", "permalloc.skeleton")


def test_the_scan_sees_the_tree():
    modules = {imp.module for imp in IMPORTS}
    assert {"permalloc.machine", "permalloc.model.metrics", "permalloc.arches.x86", "permalloc.plugins.bpf_jit.pack",
            "permalloc.cli"} <= modules
    # a relative import resolves, and a from-import names the module it brings in
    assert any(imp.module == "permalloc.arches.x86.mechanisms" and imp.target == "permalloc.arches.x86.textpoke"
               for imp in IMPORTS)
    assert any(imp.module == "permalloc.machine" and imp.target == "permalloc.mechanisms.cpa" for imp in IMPORTS)
    assert any(imp.annotation_only and imp.module == "permalloc.plugin.hookspecs"
               and imp.target.startswith("permalloc.run") for imp in IMPORTS)
    # and the rules below would see a violation
    assert _violations(("permalloc.plugin",), ("permalloc.run",)) != []  # hookspecs' annotations


def test_the_model_imports_only_itself_and_errors():
    assert _violations(("permalloc.model",), ("permalloc",), allowed=("permalloc.model", "permalloc.errors")) == []


def test_mechanisms_import_the_model_and_the_machine_type_only():
    assert _violations(("permalloc.mechanisms",), ("permalloc",),
                       allowed=("permalloc.model", "permalloc.mechanisms", "permalloc.errors"),
                       for_annotations=("permalloc.machine",)) == []


def test_the_plugin_layer_imports_the_machine_run_and_report_for_annotations_only():
    assert _violations(("permalloc.plugin",), ("permalloc",),
                       allowed=("permalloc.model", "permalloc.mechanisms", "permalloc.plugin", "permalloc.errors",
                                "permalloc.strictjson"),
                       for_annotations=(*MACHINE, "permalloc.run", "permalloc.report")) == []


@pytest.mark.parametrize(("layer", "above", "for_annotations"), [
    (MACHINE, ("permalloc.run", "permalloc.report", *TOP), ("permalloc.run",)),
    (("permalloc.run",), ("permalloc.report", *TOP), ()),
    (("permalloc.report",), TOP, ()),
], ids=["machine", "run", "report"])
def test_lower_layers_do_not_import_upper_ones(layer, above, for_annotations):
    assert _violations(layer, above, for_annotations=for_annotations) == []


def test_the_core_never_imports_an_arch_or_a_plugin():
    core = [imp for imp in IMPORTS if not _within(imp.module, *ARCHES_AND_PLUGINS)]
    assert core and [str(imp) for imp in core if _within(imp.target, *ARCHES_AND_PLUGINS) and _real(imp.target)] == []


def test_consumers_never_import_an_arch():
    # they read machine.arch (the ArchInfo) or call a hook; an arch may reuse a consumer's model
    assert _violations(("permalloc.plugins",), ("permalloc.arches",)) == []
