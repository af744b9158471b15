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
