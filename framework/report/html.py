"""A static HTML page with the comparison table and its plots."""

from __future__ import annotations

import html
import json
from collections.abc import Sequence
from pathlib import Path

from permalloc.atomicfile import check_writable, write_text
from permalloc.errors import OutputError
from permalloc.model.metrics import DESCRIPTIONS, METRICS
from permalloc.model.spec import MachineSpec
from permalloc.plugin.policy import PolicySpec
from permalloc.report.plots import save_plots
from permalloc.run.simulation import PolicyResult

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 14px; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead th { background: #f0f0f0; }
td.best { background: #e4f5e4; }
img { max-width: 100%; border: 1px solid #ddd; margin: 1em 0; }
.small { color: #666; font-size: 12px; }
"""


# Metrics where a smaller number is the better design (the others are informative).
LOWER_IS_BETTER = frozenset(METRICS) - {"directmap_2m_bytes", "directmap_1g_bytes", "huge_mappings", "requested_bytes"}


def write_html(
    directory: str | Path,
    scenario: str,
    spec: MachineSpec,
    results: Sequence[PolicyResult],
    policies: Sequence[PolicySpec],
) -> Path:
    out = Path(directory)
    check_writable(out, directory=True)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"{out}: cannot create the report folder: {exc.strerror or exc}") from None
    save_plots(results, scenario, out / "bars.png")
    head = "".join(f"<th>{html.escape(r.policy)}</th>" for r in results)
    rows = []
    if any(r.workload for r in results):
        cells = "".join(f"<td>{html.escape(r.workload or '-')}</td>" for r in results)
        rows.append(f'<tr><td title="the workload (kernel) each policy ran on">workload</td>{cells}</tr>')
    for name in METRICS:
        values = [r.totals[name] for r in results]
        best = min(values)
        shade = name in LOWER_IS_BETTER and len(set(values)) > 1
        cells = "".join(f'<td class="{"best" if shade and v == best else ""}">{v:,}</td>' for v in values)
        rows.append(f'<tr><td title="{html.escape(DESCRIPTIONS[name])}">{name}</td>{cells}</tr>')
    per_op = []
    for r in results:
        for kind, stats in r.per_op.items():
            per_op.append(
                f"<tr><td>{html.escape(r.policy)}</td><td>{html.escape(kind)}</td><td>{stats['count']}</td>"
                + "".join(f"<td>{stats[m]['mean']:,}</td>" for m in ("shootdowns", "local_flushes", "sync_ipis", "directmap_splits_2m", "cost_ns"))
                + "</tr>"
            )
    machine = html.escape(json.dumps({"arch": spec.arch, "cpus": spec.cpus, "memory": spec.memory, "seed": spec.seed}))
    page = f"""<!doctype html>
<html><head><meta charset="utf-8"><title>permalloc: {html.escape(scenario)}</title><style>{_STYLE}</style></head>
<body>
<h1>permalloc: scenario {html.escape(scenario)}</h1>
<p class="small">machine {machine}. Where lower is better, the best value of a row is shaded; hover a metric for its meaning.</p>
<h2>Totals</h2>
<table><thead><tr><th>metric</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>
<h2>Per operation (mean)</h2>
<table><thead><tr><th>policy</th><th>op</th><th>count</th><th>shootdowns</th><th>local_flushes</th><th>sync_ipis</th><th>directmap_splits_2m</th><th>cost_ns</th></tr></thead>
<tbody>{''.join(per_op)}</tbody></table>
<h2>Plots</h2>
<img src="bars.png" alt="totals by policy">
<img src="bars-timeline.png" alt="DirectMap4k and shootdowns over time">
<h2>Policies</h2>
<ul>{''.join(f'<li><b>{html.escape(p.name)}</b>: {html.escape(p.description)}</li>' for p in policies)}</ul>
</body></html>
"""
    index = out / "index.html"
    write_text(index, page)
    return index
