"""Every ```python block of docs/*.md runs (the examples are part of the contract)."""

from __future__ import annotations

import re
import sys
import types
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)


def _examples():
    for page in sorted(DOCS.glob("*.md")):
        for i, code in enumerate(BLOCK.findall(page.read_text())):
            yield pytest.param(code, id=f"{page.stem}-{i}")


@pytest.mark.parametrize("code", list(_examples()))
def test_doc_example_runs(code, monkeypatch):
    # a real module, so that pydantic can resolve the annotations of models defined there
    module = types.ModuleType("permalloc_doc_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(code, "<doc>", "exec"), module.__dict__)


def test_every_guide_exists_and_has_an_example():
    for name in ("writing-an-arch-plugin", "writing-a-consumer-plugin", "writing-a-policy", "comparing-policies"):
        assert BLOCK.search((DOCS / f"{name}.md").read_text()), name


ROOT = DOCS.parent
ARCHITECTURE = DOCS / "architecture.md"


def _table_names(section: str) -> list[str]:
    """The first-column names (`name`) of the tables in ``## section`` of architecture.md."""
    text = ARCHITECTURE.read_text()
    body = text.split(f"\n## {section}\n", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"^\| `([a-z0-9_]+)` \|", body, re.M)


def test_architecture_lists_every_metric_in_order():
    from permalloc.model.metrics import GAUGES, METRICS

    assert _table_names("Metrics") == list(METRICS)
    text = ARCHITECTURE.read_text()
    for name in METRICS:
        kind = "gauge" if name in GAUGES else "counter"
        assert re.search(rf"^\| `{name}` \| {kind} \| [A-Za-z ]+ \| .+ \|$", text, re.M), name


def test_architecture_lists_every_core_event_kind():
    from permalloc.model.events import KINDS

    assert _table_names("Events") == list(KINDS)


def test_architecture_names_every_layer_folder():
    text = ARCHITECTURE.read_text()
    for folder in ("model", "mechanisms", "plugin", "run", "report"):
        assert f"`framework/{folder}/`" in text
        for module in sorted((ROOT / "framework" / folder).glob("*.py")):
            if module.stem != "__init__":
                assert f"`{module.name}`" in text, module


def test_nothing_refers_to_the_design_file_users_do_not_have():
    design = "DESIGN" + ".md"
    found = [str(path.relative_to(ROOT)) for folder in ("framework", "arches", "plugins", "docs", "tests", "benchmarks",
                                                        "examples")
             for path in (ROOT / folder).rglob("*") if path.is_file() and path.suffix in (".py", ".md", ".json", ".toml")
             and "build" not in path.parts and design in path.read_text(errors="replace")]
    found += [name for name in ("README.md", "setup.cfg", "tox.ini", "pyproject.toml") if design in (ROOT / name).read_text()]
    assert found == []
