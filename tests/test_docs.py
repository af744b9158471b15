"""Every ```python block of docs/*.md runs (the examples are part of the contract), and the
contract suites that the guides subclass and the tests they show with the fixtures run too.

The blocks of one page run in order in one module, as a reader would paste them: a later
block may use what an earlier one defined (the arch guide's suite uses its example arch).
"""

from __future__ import annotations

import inspect
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
BLOCK = re.compile(r"```python\n(.*?)```", re.S)
GUIDES = ("writing-an-arch-plugin", "writing-a-consumer-plugin", "writing-a-policy", "comparing-policies")
MODULE = "permalloc_doc_example"


def _pages():
    for page in sorted(DOCS.glob("*.md")):
        if BLOCK.search(page.read_text()):
            yield pytest.param(page, id=page.stem)


def _run_page(page: Path, monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    # a real module, so that pydantic can resolve the annotations of models defined there
    module = types.ModuleType(MODULE)
    monkeypatch.setitem(sys.modules, module.__name__, module)
    for i, code in enumerate(BLOCK.findall(page.read_text())):
        exec(compile(code, f"<{page.name}: python block {i}>", "exec"), module.__dict__)
    return module


@pytest.mark.parametrize("page", list(_pages()))
def test_doc_examples_run(page, monkeypatch):
    _run_page(page, monkeypatch)


def _suites(module: types.ModuleType) -> list[str]:
    from permalloc.testing import ContractSuite

    return [name for name, value in vars(module).items()
            if inspect.isclass(value) and issubclass(value, ContractSuite) and value is not ContractSuite]


def _tests(module: types.ModuleType) -> list[str]:
    return [name for name, value in vars(module).items() if name.startswith("test_") and inspect.isfunction(value)]


@pytest.mark.parametrize("guide", ["writing-an-arch-plugin", "writing-a-consumer-plugin", "writing-a-policy"])
def test_guide_snippets_run_and_their_tests_pass(guide, monkeypatch, tmp_path):
    page = DOCS / f"{guide}.md"
    module = _run_page(page, monkeypatch)
    suites, tests = _suites(module), _tests(module)
    if guide == "writing-an-arch-plugin":
        assert suites == ["TestRoxContract", "TestBroadcastContract", "TestArm64Contract"]  # for its own example arches
    assert tests, f"{guide} shows no test with the fixtures"
    # pytest collects the page's code as a test file, like a reader's tests/ (the fixtures of
    # permalloc's pytest plugin are there: it is installed with permalloc)
    test_file = tmp_path / f"test_{guide.replace('-', '_')}.py"
    test_file.write_text("\n".join(BLOCK.findall(page.read_text())))
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-p", "no:randomly",
                           str(test_file)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    summary = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else proc.stderr
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    passed = int(re.search(r"(\d+) passed", summary).group(1))
    assert "failed" not in summary and passed >= 10 * len(suites) + len(tests), summary


def test_every_guide_exists_and_has_an_example():
    for name in GUIDES:
        assert BLOCK.search((DOCS / f"{name}.md").read_text()), name


def test_the_arch_guide_names_only_what_exists():
    text = (DOCS / "writing-an-arch-plugin.md").read_text()
    from permalloc.model.archinfo import ArchInfo

    assert "flush ceiling" not in text.split("## Choosing mechanisms")[0]  # not an ArchInfo field
    assert not {"tlb_single_page_flush_ceiling", "tlb_flush_ceiling"} & set(ArchInfo.model_fields)
    for name in re.findall(r"`machine\.([a-z_]+)`", text):
        assert name in ("vmalloc", "cpa", "tlb_flush", "text", "arch"), name
    assert "## Worked example: arm64" in text


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


def test_the_units_of_the_metrics_are_the_documented_ones():
    from permalloc.model.metrics import METRICS, UNITS

    text = ARCHITECTURE.read_text()
    documented = dict(re.findall(r"^\| `([a-z0-9_]+)` \| (?:counter|gauge) \| ([A-Za-z ]+) \|", text, re.M))
    assert documented == UNITS and list(UNITS) == list(METRICS)


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
