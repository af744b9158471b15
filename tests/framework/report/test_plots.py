from __future__ import annotations

import matplotlib.pyplot as plt
import pytest

from permalloc.model.metrics import METRICS, percentile
from permalloc.report.plots import BAR_METRICS, DISTRIBUTION_METRICS, bars, distributions, spans_decades, timeline


@pytest.fixture
def draw():
    figures = []

    def drawn(fig):
        fig.canvas.draw()
        figures.append(fig)
        return fig

    yield drawn
    for fig in figures:
        plt.close(fig)


def _by_title(fig):
    return {ax.get_title(): ax for ax in fig.axes if ax.get_visible()}


def test_spans_decades():
    assert spans_decades([151, 15_590]) and not spans_decades([140, 12_799])
    assert spans_decades([0, 1, 1000]) and not spans_decades([0, 0]) and not spans_decades([])


def test_bars_name_units_use_mib_and_go_log_over_two_decades(results, draw):
    spread = [r.model_copy(update={"totals": {**r.totals, "shootdowns": n, "directmap_4k_bytes": 52 << 20}})
              for n, r in zip((151, 1559, 15_590), results)]  # just over two decades apart
    axes = _by_title(draw(bars(spread, "phased")))
    assert set(axes) == set(BAR_METRICS)
    assert axes["shootdowns"].get_yscale() == "log" and axes["shootdowns"].get_ylabel() == "flushes"
    assert axes["directmap_4k_bytes"].get_ylabel() == "MiB" and axes["directmap_4k_bytes"].get_yscale() == "linear"
    assert max(axes["directmap_4k_bytes"].get_ylim()) < 100  # in MiB, not bytes
    assert axes["cost_ns"].get_ylabel() in ("ns", "µs", "ms", "s")
    for name, ax in axes.items():
        assert ax.get_ylabel(), name
        assert ax.yaxis.get_offset_text().get_text() == "", name  # no 1e9 offsets
    labels = {t.get_text() for t in axes["directmap_4k_bytes"].texts}
    assert "52 MiB" in labels  # each bar says its value


def test_timeline_is_over_simulated_time_with_the_phases(results, draw):
    fig = draw(timeline(results, "phased"))
    top, bottom = fig.axes[:2]
    assert bottom.get_xlabel() == "simulated time (s)" and top.get_ylabel().startswith("DirectMap4k (")
    xs = top.get_lines()[0].get_xdata()
    assert list(xs) == [p["t_ms"] / 1000 for p in results[0].timeline] and max(xs) == 1.0
    names = {t.get_text() for t in top.texts}
    assert names == {"boot: no simulated time", "churn", "patch: no simulated time"}


def test_per_op_boxes_show_median_p90_and_max(results, draw):
    fig = draw(distributions(results, "phased"))
    axes = _by_title(fig)
    kinds = {title.split(":")[0] for title in axes}
    assert {"module_load", "finish"} <= kinds and "advance" not in kinds
    assert {title.split(": ")[1] for title in axes} == set(DISTRIBUTION_METRICS)
    ax = axes["module_load: cost_ns"]
    values = results[0].samples["module_load"]["cost_ns"]
    unit = ax.get_ylabel()
    scale = {"ns": 1, "µs": 1e3, "ms": 1e6, "s": 1e9}[unit]
    whiskers = [line for line in ax.get_lines() if len(set(line.get_xdata())) == 1]
    tops = {round(max(line.get_ydata()), 9) for line in whiskers}
    assert round(percentile(values, 90) / scale, 9) in tops  # the upper whisker is p90
    assert any(round(max(line.get_ydata()), 9) == round(max(values) / scale, 9) for line in ax.get_lines())


def test_every_metric_sample_kept_only_when_asked(results):
    assert set(results[0].samples["module_load"]) == set(DISTRIBUTION_METRICS)
    assert len(results[0].samples["module_load"]["cost_ns"]) == results[0].per_op["module_load"]["count"]
    assert set(results[0].per_op["module_load"]) == {"count", *METRICS}


def test_over_seeds_a_bar_is_the_mean_with_its_interval(results, seeds, draw):
    from matplotlib.container import ErrorbarContainer

    fig = draw(bars(results, "phased", seeds))
    assert "mean over 3 seeds, error bars the 95% interval" in fig._suptitle.get_text()
    ax = _by_title(fig)["shootdowns"]
    entries = [seeds["policies"][r.policy]["shootdowns"] for r in results]
    heights = [patch.get_height() for patch in ax.patches]
    assert heights == pytest.approx([e["centre"] for e in entries])
    (errors,) = [c for c in ax.containers if isinstance(c, ErrorbarContainer)]
    segments = errors.lines[2][0].get_segments()
    for segment, e in zip(segments, entries):
        low, high = sorted(y for _x, y in segment)
        assert (low, high) == pytest.approx((e["centre"] if e["low"] is None else e["low"],
                                             e["centre"] if e["high"] is None else e["high"]))
