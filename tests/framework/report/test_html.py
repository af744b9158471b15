from __future__ import annotations

import html
import re

from permalloc.model.metrics import METRICS
from permalloc.plugin.pluginmanager import registry_manager
from permalloc.report.html import write_html
from permalloc.run.workloads import workloads

from .conftest import PHASED


def test_the_page_is_self_contained_and_says_what_ran(results, chosen, spec, tmp_path):
    index = write_html(tmp_path / "report", PHASED, spec, results, chosen, workloads(registry_manager()))
    assert [p.name for p in index.parent.iterdir()] == ["index.html"]
    page = index.read_text()
    assert not re.search(r'(src|href)="(?!data:)', page)  # nothing fetched: images are data URIs
    assert page.count('<img id="plot-') == 3
    assert f"Machine: {spec.arch}, 2 CPUs, 2 GiB RAM, 1 NUMA node, fresh memory state, seed 0." in page
    assert "{&quot;" not in page and '{"arch"' not in page  # not a JSON dict
    text = html.unescape(page)
    for policy in chosen:
        assert policy.description in text
    assert "churn</b>: ops 2–21, 0 s to 1.00 s of simulated time" in text
    assert "boot</b>: ops 0–1, at 0 s, no simulated time" in text
    assert re.search(r"kernel [\d.+\w-]+, (x86_64|aarch64), [\d,]+ modules", text)


def test_numbers_are_in_human_units_with_the_raw_value_beside(results, chosen, spec, tmp_path):
    page = write_html(tmp_path / "r", PHASED, spec, results, chosen).read_text()
    first = results[0]
    assert first.totals["allocated_bytes"] > 1024  # the modules' and allocations' peak
    cell = re.search(rf'<td[^>]*data-value="{first.totals["allocated_bytes"]}" data-metric="allocated_bytes" '
                     rf'data-policy="{first.policy}">([^<]+)</td>', page)
    assert cell and cell.group(1).endswith(("KiB", "MiB"))
    stats = first.per_op["module_load"]["cost_ns"]
    for stat in ("mean", "median", "p90", "max"):
        assert (f'data-value="{stats[stat]}" data-metric="cost_ns" data-policy="{first.policy}" data-op="module_load" '
                f'data-stat="{stat}"') in page
    assert 'class="sortable"' in page and "<script>" in page
    assert 'data-op="advance"' not in page  # an op that costs nothing has no table


def test_over_seeds_the_page_shows_means_intervals_and_shades_only_what_noise_allows(results, chosen, spec, seeds,
                                                                                      tmp_path):
    from permalloc.report.html import LOWER_IS_BETTER
    from permalloc.run.seedstats import paired

    page = write_html(tmp_path / "s", PHASED, spec, results, chosen, seeds=seeds).read_text()
    seeds_table = page[page.index('id="seeds"'):page.index("</table>", page.index('id="seeds"'))]
    for name, metrics in seeds["policies"].items():
        for metric, entry in metrics.items():
            assert (f'data-value="{entry["centre"]}" data-low="{entry["low"]}" data-high="{entry["high"]}" '
                    f'data-metric="{metric}" data-policy="{name}"') in seeds_table
    for metric in LOWER_IS_BETTER:  # shaded: the lowest mean, told apart from every other policy
        shaded = re.findall(rf'<td class="best"[^>]*data-metric="{metric}" data-policy="([^"]+)"', seeds_table)
        by_name = seeds["policies"]
        told = [name for name in by_name
                if by_name[name][metric]["centre"] == min(p[metric]["centre"] for p in by_name.values())
                and all(paired(p[metric]["values"], by_name[name][metric]["values"])["distinguishable"]
                        for other, p in by_name.items() if other != name)]
        assert shaded == told[:1], metric
    totals = page[page.index('id="totals"'):page.index("</table>", page.index('id="totals"'))]
    assert 'class="best"' not in totals  # one seed's numbers are never shaded as a win
    base = seeds["baseline"]
    marks = re.findall(r'data-metric="(\w+)" data-policy="([^"]+)" data-distinguishable="(true|false)">([^<]*)<', page)
    assert len(marks) == len(METRICS) * len(base["policies"])
    for metric, name, told, text in marks:
        entry = base["policies"][html.unescape(name)][metric]
        assert (told == "true") == entry["distinguishable"]
        assert text.endswith("≈") != entry["distinguishable"]
