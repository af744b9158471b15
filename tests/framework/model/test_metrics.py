from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from permalloc.model.metrics import METRICS, Metrics, percentile
from permalloc.model.spec import CostModel


@given(st.lists(st.floats(min_value=0, max_value=1e12), min_size=1, max_size=50), st.sampled_from([0, 25, 50, 90, 100]))
def test_percentile_is_numpys_linear_one(values, q):
    assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_per_op_has_mean_median_p90_max_of_each_metric():
    metrics = Metrics(cpus=2, cost=CostModel())
    for n in range(1, 11):
        metrics.record_op("op", [float(n if name == "shootdowns" else 0) for name in METRICS])
    stats = metrics.per_op()["op"]
    assert stats["count"] == 10
    assert stats["shootdowns"] == {"mean": 5.5, "median": 5.5, "p90": 9.1, "max": 10}
    assert metrics.samples(["shootdowns"]) == {"op": {"shootdowns": [float(n) for n in range(1, 11)]}}
