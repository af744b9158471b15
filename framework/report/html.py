"""A self-contained HTML page of a comparison: what each policy is, the machine and workloads in
words, sortable tables in human units, per-op distributions and the plots inline.

No network: the plots are PNG data URIs and the table sorting is a few lines of inline
JavaScript. Every number cell carries its raw value (``data-value``) and what it is
(``data-policy``, ``data-metric``, ``data-op``, ``data-stat``): the sort reads it, and so can a test.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from permalloc import __version__
from permalloc.atomicfile import check_writable, write_text
from permalloc.errors import OutputError
from permalloc.model.metrics import DESCRIPTIONS, METRICS, UNITS
from permalloc.model.spec import MachineSpec
from permalloc.plugin.policy import PolicySpec
from permalloc.report.describe import describe_machine, describe_workload
from permalloc.report.intervals import SAME, ratio_text
from permalloc.report.plots import FIGURES, render
from permalloc.report.quantities import format_count, format_duration, format_quantity
from permalloc.report.tables import costly_kinds
from permalloc.run.scenario import Scenario
from permalloc.run.seedstats import paired
from permalloc.run.simulation import PolicyResult
from permalloc.run.workloads import WorkloadSource

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 1800px; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f0f0f0; cursor: pointer; user-select: none; }
thead th[data-dir="asc"]::after { content: " \\25B2"; }
thead th[data-dir="desc"]::after { content: " \\25BC"; }
td.best { background: #e4f5e4; }
td.text, th.text { text-align: left; white-space: normal; }
.scroll { overflow-x: auto; }
.grid { display: flex; flex-wrap: wrap; gap: 0 2em; }
.grid h4 { margin: 0.6em 0 0; font-size: 14px; }
img { max-width: 100%; border: 1px solid #ddd; margin: 1em 0; }
.small { color: #666; font-size: 12px; }
"""

_SORT = """
document.querySelectorAll("table.sortable").forEach(function (table) {
  var heads = table.tHead.rows[0].cells;
  Array.prototype.forEach.call(heads, function (th, col) {
    th.addEventListener("click", function () {
      var dir = th.dataset.dir === "asc" ? "desc" : "asc";
      Array.prototype.forEach.call(heads, function (h) { delete h.dataset.dir; });
      th.dataset.dir = dir;
      var body = table.tBodies[0];
      var key = function (row) {
        var cell = row.cells[col];
        return cell.dataset.value !== undefined ? parseFloat(cell.dataset.value) : cell.textContent;
      };
      var rows = Array.prototype.slice.call(body.rows);
      rows.sort(function (a, b) {
        var x = key(a), y = key(b);
        var order = typeof x === "number" ? x - y : String(x).localeCompare(String(y));
        return dir === "asc" ? order : -order;
      });
      rows.forEach(function (row) { body.appendChild(row); });
    });
  });
});
"""

# Metrics where a smaller number is the better design (the others are informative).
LOWER_IS_BETTER = frozenset(METRICS) - {"directmap_2m_bytes", "directmap_1g_bytes", "huge_mappings", "requested_bytes"}
STATS = ("mean", "median", "p90", "max")
_SHADING = {False: "Where lower is better, the best value of a column is shaded (one seed: seed noise is not "
                   "accounted for; <code>--seeds N</code> shows it).",
            True: "One seed's run, not shaded: the table over seeds above says what differences hold."}

_e = html.escape


def _attrs(**data: object) -> str:
    return "".join(f' data-{key}="{_e(str(value))}"' for key, value in data.items())


def _number(metric: str, value: float, css: str = "", **data: object) -> str:
    """A cell showing ``value`` of ``metric`` in human units, its raw value in ``data-value``."""
    klass = f' class="{css}"' if css else ""
    return f"<td{klass}{_attrs(value=value, metric=metric, **data)}>{_e(format_quantity(metric, value))}</td>"


def _header(name: str) -> str:
    """A metric's column head: breakable after underscores, its meaning and unit on hover."""
    title = f"{DESCRIPTIONS.get(name, name)} ({UNITS.get(name, 'count')})"
    return f'<th title="{_e(title)}">{_e(name).replace("_", "_<wbr>")}</th>'


def _totals(results: Sequence[PolicyResult], shade: bool = True) -> str:
    """One row per policy, one column per metric; the best value of a lower-is-better metric shaded
    (unless ``shade`` is off: over several seeds the seeds' table shades what seed noise allows)."""
    best = {}
    for name in METRICS:
        values = [r.totals[name] for r in results]
        if shade and name in LOWER_IS_BETTER and len(set(values)) > 1:
            best[name] = min(values)
    rows = []
    for r in results:
        cells = "".join(_number(name, r.totals[name], "best" if best.get(name) == r.totals[name] else "",
                                policy=r.policy) for name in METRICS)
        rows.append(f"<tr><td>{_e(r.policy)}</td>{cells}</tr>")
    head = "".join(_header(name) for name in METRICS)
    return (f'<div class="scroll"><table class="sortable" id="totals"><thead><tr><th>policy</th>{head}</tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table></div>")


def _told_apart_best(metric: str, policies: Mapping[str, Any]) -> str | None:
    """The policy with the lowest mean of a lower-is-better ``metric`` if a paired test over the same
    seeds tells it apart from every other policy (permalloc.run.seedstats.paired), else None."""
    if metric not in LOWER_IS_BETTER:
        return None
    best = min(policies, key=lambda name: policies[name][metric]["centre"])
    values = policies[best][metric]["values"]
    others = [p[metric]["values"] for name, p in policies.items() if name != best]
    if not others or not all(paired(other, values)["distinguishable"] for other in others):
        return None
    return best


def _interval_cell(metric: str, entry: Mapping[str, Any], css: str, policy: str) -> str:
    """The mean over seeds in human units with ``±`` half its interval; raw centre and bounds as data."""
    text = format_quantity(metric, entry["centre"])
    if entry["low"] is not None and entry["low"] != entry["high"]:
        text += f" ±{format_quantity(metric, (entry['high'] - entry['low']) / 2)}"
    klass = f' class="{css}"' if css else ""
    return (f"<td{klass}{_attrs(value=entry['centre'], low=entry['low'], high=entry['high'], metric=metric, policy=policy)}>"
            f"{_e(text)}</td>")


def _ratio_cell(metric: str, entry: Mapping[str, Any], policy: str) -> str:
    """A policy's mean per-seed ratio to the baseline with its interval, marked when seed noise cannot
    tell the two apart."""
    ratio, told = entry["ratio"], entry["distinguishable"]
    text = ratio_text(entry)
    title = f' title="paired t-test p = {entry["p"]:.3g}"' if entry["p"] is not None else ""
    value = "" if ratio["centre"] is None else ratio["centre"]
    return (f"<td{title}{_attrs(value=value, metric=metric, policy=policy, distinguishable=str(told).lower())}>"
            f"{_e(text)}</td>")


def _over_seeds(summary: Mapping[str, Any]) -> str:
    """The ``compare --seeds N`` section: each metric's mean with its interval per policy (shaded only
    where the best is told apart from every other policy) and, with a baseline, the ratios to it."""
    seeds, policies = summary["seeds"], summary["policies"]
    best = {metric: _told_apart_best(metric, policies) for metric in METRICS}
    head = "".join(_header(name) for name in METRICS)
    rows = "".join(f"<tr><td>{_e(name)}</td>"
                   + "".join(_interval_cell(metric, p[metric], "best" if best[metric] == name else "", name)
                             for metric in METRICS) + "</tr>" for name, p in policies.items())
    part = (f'<h2>Over {len(seeds)} seeds</h2><p class="small">Mean over seeds {seeds[0]}..{seeds[-1]}; ± is half of '
            f"its {summary['confidence']:.0%} interval ({_e(summary['method'])}). Where lower is better, the lowest mean "
            "is shaded only when a paired test over the same seeds tells it apart from every other policy.</p>"
            f'<div class="scroll"><table class="sortable" id="seeds"><thead><tr><th>policy</th>{head}</tr></thead>'
            f"<tbody>{rows}</tbody></table></div>")
    baseline = summary.get("baseline")
    if baseline:
        rows = "".join(f"<tr><td>{_e(name)}</td>" + "".join(_ratio_cell(metric, p[metric], name) for metric in METRICS)
                       + "</tr>" for name, p in baseline["policies"].items())
        part += (f'<h3>As a ratio to {_e(baseline["policy"])}</h3><p class="small">Mean of the per-seed ratios with its '
                 f"interval; {SAME}: the difference cannot be told apart from seed noise at {len(seeds)} seeds (hover "
                 "for the p-value).</p>"
                 f'<div class="scroll"><table class="sortable" id="baseline"><thead><tr><th>policy</th>{head}</tr>'
                 f"</thead><tbody>{rows}</tbody></table></div>")
    return part


def _per_op(results: Sequence[PolicyResult]) -> str:
    """Per op kind, per metric that some op changed: a table of count, mean, median, p90, max by policy."""
    parts = []
    for kind in costly_kinds(results):
        tables = []
        for name in METRICS:
            entries = [(r, r.per_op[kind]) for r in results if kind in r.per_op]
            if not any(stats[name]["max"] for _r, stats in entries):
                continue
            rows = "".join(
                f"<tr><td>{_e(r.policy)}</td>"
                f"<td{_attrs(value=stats['count'], policy=r.policy, op=kind, stat='count')}>"
                f"{format_count(stats['count'])}</td>"
                + "".join(_number(name, stats[name][stat], policy=r.policy, op=kind, stat=stat) for stat in STATS)
                + "</tr>"
                for r, stats in entries
            )
            head = "".join(f"<th>{stat}</th>" for stat in STATS)
            tables.append(f'<div><h4 title="{_e(DESCRIPTIONS[name])}">{_e(name)}</h4>'
                          f'<table class="sortable"{_attrs(op=kind, metric=name)}><thead><tr><th>policy</th>'
                          f"<th>ops</th>{head}</tr></thead><tbody>{rows}</tbody></table></div>")
        parts.append(f'<h3>{_e(kind)}</h3><div class="grid">{"".join(tables)}</div>')
    return "".join(parts)


def _when(ms: float) -> str:
    return format_duration(ms * 1e6) if ms else "0 s"


def _phases(scenario: Scenario, results: Sequence[PolicyResult]) -> str:
    """The scenario's phases in words: their ops and their span of simulated time."""
    if not results or not results[0].phases:
        return ""
    marks = results[0].phases
    end_ms = max((p["t_ms"] for p in results[0].timeline), default=marks[-1].t_ms)
    items = []
    for i, mark in enumerate(marks):
        last_op = (marks[i + 1].op if i + 1 < len(marks) else len(scenario.ops)) - 1
        stop_ms = marks[i + 1].t_ms if i + 1 < len(marks) else end_ms
        span = (f"{_when(mark.t_ms)} to {_when(stop_ms)} of simulated time"
                if stop_ms > mark.t_ms else f"at {_when(mark.t_ms)}, no simulated time")
        items.append(f"<li><b>{_e(mark.name)}</b>: ops {format_count(mark.op)}–{format_count(last_op)}, {span}</li>")
    return f"<p>Phases (marked on the timeline):</p><ul>{''.join(items)}</ul>"


def _policies(results: Sequence[PolicyResult], policies: Sequence[PolicySpec],
              workloads: Mapping[str, WorkloadSource]) -> str:
    by_name = {p.name: p for p in policies}
    rows = []
    for r in results:
        policy = by_name.get(r.policy)
        source = workloads.get(r.workload or "")
        ran_on = describe_workload(source) if source else (r.workload or "no workload")
        rows.append(f'<tr><td>{_e(r.policy)}</td><td class="text">{_e(r.arch)}, kernel {_e(policy.kernel if policy else "?")}'
                    f'</td><td class="text">{_e(ran_on)}</td>'
                    f'<td class="text">{_e(policy.description if policy else "")}</td></tr>')
    return ('<table class="sortable" id="policies"><thead><tr><th>policy</th><th class="text">arch, kernel</th>'
            '<th class="text">workload</th><th class="text">what it is</th></tr></thead>'
            f"<tbody>{''.join(rows)}</tbody></table>")


def _plots(results: Sequence[PolicyResult], scenario: str, seeds: Mapping[str, Any] | None) -> str:
    alt = {"bars": "totals by policy" + (", mean over seeds with its interval" if seeds else ""), "timeline": "DirectMap4k and shootdowns over simulated time, phases marked",
           "per-op": "per-op distributions by op kind and policy"}
    images = []
    for name, figure in FIGURES.items():
        data = base64.b64encode(render(figure(results, scenario, seeds))).decode("ascii")
        images.append(f'<img id="plot-{name}" src="data:image/png;base64,{data}" alt="{_e(alt[name])}">')
    return "".join(images)


def write_html(
    directory: str | Path,
    scenario: Scenario,
    spec: MachineSpec,
    results: Sequence[PolicyResult],
    policies: Sequence[PolicySpec],
    workloads: Mapping[str, WorkloadSource] | None = None,
    seeds: Mapping[str, Any] | None = None,
) -> Path:
    """Write ``DIRECTORY/index.html``: one file, nothing else needed to view it. ``results`` are the
    first seed's; ``seeds`` is a result's ``seeds`` section (``compare --seeds N``, --baseline):
    the page then leads with the means and intervals, and shades no single seed's numbers."""
    out = Path(directory)
    check_writable(out, directory=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create the report folder: {exc.strerror or exc}") from None
    about = f"<p>{_e(scenario.description)}</p>" if scenario.description else ""
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>permalloc: {_e(scenario.name)}</title><style>{_STYLE}</style></head>
<body>
<h1>permalloc: scenario {_e(scenario.name)}</h1>
<p id="machine">Machine: {_e(describe_machine(spec))}.</p>
{about}{_phases(scenario, results)}
<h2>Policies</h2>
{_policies(results, policies, workloads or {})}
{_over_seeds(seeds) if seeds else ""}
<h2>Totals{_e(f" of seed {seeds['seeds'][0]}") if seeds else ""}</h2>
<p class="small">Click a column to sort. {_SHADING[bool(seeds)]} Hover a metric for its meaning and unit.</p>
{_totals(results, shade=not seeds)}
<h2>Per operation</h2>
<p class="small">The change one op made to each metric it changed under some policy: mean, median, 90th
percentile and max over the ops of that kind (the JSON has every metric){_e(f"; seed {seeds['seeds'][0]}") if seeds else ""}.</p>
{_per_op(results)}
<h2>Plots</h2>
{_plots(results, scenario.name, seeds)}
<p class="small">permalloc {_e(__version__)}</p>
<script>{_SORT}</script>
</body></html>
"""
    index = out / "index.html"
    write_text(index, page)
    return index
