"""Strict JSON out: NaN, infinities and types JSON has not are named, never written."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from permalloc.errors import OutputError
from permalloc.strictjson import dumps, nonfinite_path, problem


def test_the_path_of_the_first_non_finite_number_is_named():
    doc = {"results": [{"totals": {"cost_ns": 1.0}}, {"extra": {"ratio": math.inf}}]}
    assert nonfinite_path(doc) == "results[1].extra.ratio"
    with pytest.raises(OutputError, match=r"^the results: results\[1\]\.extra\.ratio is not a finite number"):
        dumps(doc, "the results")


def test_a_type_json_has_not_is_named():
    assert problem({"cpus": {0, 1}}) == "Object of type set is not JSON serializable"
    with pytest.raises(OutputError, match="^a trace event: Object of type set is not JSON serializable"):
        dumps({"cpus": {0, 1}}, "a trace event")


@given(st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(),
                    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3)))
def test_what_is_written_is_strict_json_and_what_is_refused_has_a_reason(value):
    try:
        text = dumps(value, "doc")
    except OutputError as exc:
        assert nonfinite_path(value) and "is not a finite number" in str(exc)
    else:
        assert nonfinite_path(value) is None
        json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} written"))
