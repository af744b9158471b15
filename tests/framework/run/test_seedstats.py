"""Intervals over seeds and paired comparisons against a baseline."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from permalloc.errors import SpecError
from permalloc.model.metrics import METRICS
from permalloc.run.seedstats import interval, paired, summarise
from permalloc.run.simulation import PolicyResult


def test_interval_is_the_t_interval_of_the_mean():
    found = interval([1.0, 2.0, 3.0])
    half = stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3)
    assert found["centre"] == 2
    assert found["low"] == pytest.approx(2 - half, abs=1e-6) and found["high"] == pytest.approx(2 + half, abs=1e-6)


def test_one_value_has_no_interval():
    assert interval([5.0]) == {"centre": 5, "low": None, "high": None}


@given(st.lists(st.floats(-1e9, 1e9, allow_nan=False), min_size=2, max_size=20))
def test_interval_holds_its_centre(values):
    found = interval(values)
    assert found["low"] - 1e-6 <= found["centre"] <= found["high"] + 1e-6


def test_the_same_values_are_not_told_apart():
    assert paired([3.0, 4.0], [3.0, 4.0]) == {"ratio": {"centre": 1, "low": 1, "high": 1}, "p": 1, "distinguishable": False}


def test_a_difference_without_noise_is_told_apart():
    found = paired([11.0, 12.0, 13.0], [10.0, 11.0, 12.0])
    assert found["distinguishable"] and found["p"] == 0


def test_noise_larger_than_the_difference_is_not_told_apart():
    found = paired([10.0, 14.0, 9.0, 13.0], [11.0, 12.0, 12.0, 10.0])
    assert not found["distinguishable"]
    assert found["p"] == pytest.approx(stats.ttest_rel([10, 14, 9, 13], [11, 12, 12, 10]).pvalue, abs=1e-6)


def test_a_clear_difference_over_noise_is_told_apart():
    found = paired([20.0, 21.0, 19.0, 22.0, 20.5], [10.0, 11.5, 9.0, 10.0, 10.5])
    assert found["distinguishable"] and found["p"] < 0.05
    assert 1.8 < found["ratio"]["centre"] < 2.2


def test_one_seed_tells_nothing_apart():
    assert not paired([2.0], [1.0])["distinguishable"]


def test_a_zero_baseline_has_no_ratio():
    assert paired([1.0, 2.0], [0.0, 1.0])["ratio"]["centre"] is None
    assert paired([0.0, 0.0], [0.0, 0.0])["ratio"]["centre"] == 1


def _result(name: str, value: float) -> PolicyResult:
    return PolicyResult(policy=name, arch="x86", totals=dict.fromkeys(METRICS, value), per_op={})


def test_summary_has_every_policy_metric_and_seed():
    runs = [[_result("a", 1), _result("b", 2)], [_result("a", 3), _result("b", 6)]]
    found = summarise([0, 1], runs, baseline="a")
    assert found["policies"]["b"]["shootdowns"]["values"] == [2, 6]
    assert found["baseline"]["policies"]["b"]["cost_ns"]["ratio"]["centre"] == 2
    assert set(found["baseline"]["policies"]) == {"b"}
    with pytest.raises(SpecError, match="--baseline 'c'"):
        summarise([0, 1], runs, baseline="c")
