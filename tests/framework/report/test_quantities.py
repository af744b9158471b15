from __future__ import annotations

import pytest

from permalloc.model.metrics import METRICS
from permalloc.report.quantities import (
    axis_scale,
    format_bytes,
    format_count,
    format_duration,
    format_quantity,
    format_value,
    kind_of,
)


@pytest.mark.parametrize(("value", "text"), [
    (0, "0 B"), (512, "512 B"), (1023, "1,023 B"), (1024, "1 KiB"), (275_046, "269 KiB"),
    (54_398_976, "51.9 MiB"), (2 << 30, "2 GiB"), (4_240_000_000, "3.95 GiB"), (3 << 40, "3 TiB"), (-2048, "-2 KiB"),
])
def test_bytes_in_binary_units(value, text):
    assert format_bytes(value) == text


@pytest.mark.parametrize(("ns", "text"), [
    (0, "0 ns"), (5, "5 ns"), (8.94, "8.94 ns"), (0.5, "0.5 ns"), (3684.52, "3.68 µs"), (491_024.57, "491 µs"),
    (233_738_752, "234 ms"), (1_386_290.23, "1.39 ms"), (2e10, "20.0 s"),
])
def test_durations_carry_their_unit(ns, text):
    assert format_duration(ns) == text


@pytest.mark.parametrize(("value", "text"), [
    (0, "0"), (12_799, "12,799"), (179_172.0, "179,172"), (4.72, "4.72"), (109.43, "109"), (1339.29, "1,339"),
    (12.345, "12.3"), (0.003, "<0.01"), (2.0, "2"),
])
def test_counts_have_thousands_separators_and_means_three_digits(value, text):
    assert format_count(value) == text


def test_every_metric_has_a_kind_by_its_name():
    assert {name: kind_of(name) for name in METRICS if kind_of(name) != "count"} == {
        "directmap_4k_bytes": "bytes", "directmap_2m_bytes": "bytes", "directmap_1g_bytes": "bytes",
        "poke_bytes": "bytes", "allocated_bytes": "bytes", "requested_bytes": "bytes", "cost_ns": "ns"}
    assert format_quantity("directmap_4k_bytes", 54_398_976) == "51.9 MiB"
    assert format_quantity("cost_ns", 233_738_752) == "234 ms"
    assert format_quantity("shootdowns", 12_799) == "12,799"
    assert format_value(True) == "True" and format_value("x") == "x" and format_value(30825) == "30,825"


def test_axis_scale_reads_in_the_unit_of_the_largest_value():
    assert axis_scale("bytes", 54_398_976) == ("MiB", float(1 << 20))
    assert axis_scale("bytes", 100) == ("B", 1.0)
    assert axis_scale("ns", 233_738_752) == ("ms", 1e6)
    assert axis_scale("ns", 0) == ("ns", 1.0)
    assert axis_scale("count", 10**9) == ("", 1.0)
