"""The HTML report in a real headless browser (Chromium through playwright): ``tox -e browser``.

Marked ``browser``: the default run deselects it (setup.cfg: ``-m "not browser"``), the
browser env selects only it. It needs the ``browser`` extra (playwright) and a Chromium
binary (``apt-get install chromium``; PERMALLOC_CHROMIUM names another one)."""

from __future__ import annotations

import os

import pytest

from permalloc.plugin.pluginmanager import registry_manager
from permalloc.report.html import write_html
from permalloc.report.quantities import format_count, format_quantity
from permalloc.report.tables import report_json
from permalloc.run.workloads import workloads

from .conftest import PHASED

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def page(results, chosen, spec, tmp_path_factory):
    """The loaded report, and the console errors and failed requests seen while loading it."""
    from playwright.sync_api import sync_playwright

    index = write_html(tmp_path_factory.mktemp("report"), PHASED, spec, results, chosen, workloads(registry_manager()))
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=os.environ.get("PERMALLOC_CHROMIUM", "/usr/bin/chromium"))
        try:
            tab = browser.new_page()
            problems: list[str] = []
            tab.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
            tab.on("pageerror", lambda exc: problems.append(str(exc)))
            tab.on("requestfailed", lambda req: problems.append(f"request failed: {req.url}"))
            tab.goto(index.as_uri())
            tab.wait_for_load_state("load")
            yield tab, problems
        finally:
            browser.close()


def test_loads_without_console_errors(page):
    tab, problems = page
    assert tab.title() == f"permalloc: {PHASED.name}"
    assert problems == []


def test_every_plot_renders(page):
    tab, _ = page
    sizes = tab.eval_on_selector_all("img", "imgs => imgs.map(i => [i.id, i.complete, i.naturalWidth, i.naturalHeight])")
    assert [s[0] for s in sizes] == ["plot-bars", "plot-timeline", "plot-per-op"]
    assert all(complete and width > 300 and height > 200 for _id, complete, width, height in sizes)


def _cells(tab, selector):
    return tab.eval_on_selector_all(selector, "cells => cells.map(c => ({...c.dataset, text: c.textContent}))")


def test_the_numbers_equal_the_json(page, results, spec):
    tab, _ = page
    doc = {r["policy"]: r for r in report_json(PHASED.name, spec, results)["results"]}
    totals = _cells(tab, "#totals td[data-metric]")
    assert len(totals) == len(doc) * len(next(iter(doc.values()))["totals"])
    for cell in totals:
        value = doc[cell["policy"]]["totals"][cell["metric"]]
        assert float(cell["value"]) == value and cell["text"] == format_quantity(cell["metric"], value)
    per_op = _cells(tab, "td[data-op]")
    assert {c["op"] for c in per_op} >= {"module_load", "finish"}
    for cell in per_op:
        stats = doc[cell["policy"]]["per_op"][cell["op"]]
        if cell["stat"] == "count":
            assert int(cell["value"]) == stats["count"] and cell["text"] == format_count(stats["count"])
        else:
            value = stats[cell["metric"]][cell["stat"]]
            assert float(cell["value"]) == value and cell["text"] == format_quantity(cell["metric"], value)


def test_a_click_sorts_a_table(page, results):
    tab, _ = page
    tab.click("#totals thead th[title^='all-CPU TLB flushes']")  # shootdowns
    order = tab.eval_on_selector_all("#totals tbody td[data-metric='shootdowns']", "cs => cs.map(c => +c.dataset.value)")
    assert order == sorted(r.totals["shootdowns"] for r in results)
    tab.click("#totals thead th[title^='all-CPU TLB flushes']")
    order = tab.eval_on_selector_all("#totals tbody td[data-metric='shootdowns']", "cs => cs.map(c => +c.dataset.value)")
    assert order == sorted((r.totals["shootdowns"] for r in results), reverse=True)
