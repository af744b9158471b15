"""Fuzz target for model files: scenarios and policies, as JSON or TOML.

Inputs are drawn in four shapes: documents of the model's own shape whose values are any
JSON (wrong types, NaN, huge numbers, unknown keys), any JSON document, text that is not a
document (random bytes, broken UTF-8, nesting a hundred thousand deep) and a valid document
cut short. The target holds loading to its contract: every input gives the model or a
one-line :class:`~permalloc.errors.PermallocError` naming the file.

hypothesis draws the inputs (``tests/framework/run/test_modelfuzz.py`` runs a small budget,
``benchmarks/fuzz.py`` a long one).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hypothesis import strategies as st

from permalloc.errors import PermallocError
from permalloc.plugin.policy import PolicySpec
from permalloc.run.modelfile import load_model_file
from permalloc.run.scenario import OpType, Scenario
from permalloc.run.timeout import RunTimeout

_scalars = (st.none() | st.booleans() | st.integers(-(1 << 70), 1 << 70) | st.floats()
            | st.text(max_size=12) | st.sampled_from(["RX", "RW", "R", "RWX", "", "6.1", "pack", "-1", "1e400"]))
json_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=16)


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()  # NaN and Infinity included: the loader must refuse them


def _toml(value: dict[str, Any]) -> bytes:
    """A flat TOML rendering of the scalar entries (nested values go in as JSON-ish strings)."""
    lines = []
    for key, item in value.items():
        if isinstance(item, bool):
            text = "true" if item else "false"
        elif isinstance(item, (int, float)):
            text = repr(item)
        else:
            text = json.dumps(str(item))
        lines.append(f"{json.dumps(key)} = {text}")
    return "\n".join(lines).encode()


def scenario_shape(op_names: Sequence[str]) -> st.SearchStrategy[dict[str, Any]]:
    op = st.fixed_dictionaries({"op": st.sampled_from(sorted(op_names)) | json_values},
                               optional={k: json_values for k in ("id", "size", "perm", "cpu", "module", "range",
                                                                  "count", "offset", "length", "ms", "pages")})
    return st.fixed_dictionaries({"ops": st.lists(op, max_size=5) | json_values},
                                 optional={"name": json_values, "description": json_values})


def policy_shape() -> st.SearchStrategy[dict[str, Any]]:
    return st.dictionaries(st.sampled_from(sorted(PolicySpec.model_fields)) | st.text(max_size=8), json_values,
                           max_size=6)


@st.composite
def documents(draw: st.DrawFn, shape: st.SearchStrategy[dict[str, Any]]) -> tuple[str, bytes]:
    """(suffix, bytes) of one model file."""
    kind = draw(st.sampled_from(["shaped", "shaped", "shaped", "json", "text", "cut"]))
    if kind == "shaped":
        value = draw(shape)
        return draw(st.sampled_from([(".json", _json(value)), (".toml", _toml(value))]))
    if kind == "json":
        return ".json", _json(draw(json_values))
    if kind == "text":
        body = draw(st.binary(max_size=64) | st.integers(1, 100_000).map(lambda n: b"[" * n + b"]" * n)
                    | st.integers(1, 100_000).map(lambda n: b'{"a":' * n))
        return draw(st.sampled_from([".json", ".toml"])), body
    whole = _json(draw(shape))
    return ".json", whole[: draw(st.integers(0, max(len(whole) - 1, 0)))]


def check_scenario(path: Path, data: bytes, registry: dict[str, OpType]) -> str:
    """Load and validate ``data`` as a scenario file: ``"ok"`` or ``"refused"``; anything else is
    an AssertionError."""
    path.write_bytes(data)
    return _outcome(path, lambda: load_model_file(path, Scenario).validated(registry, origin=str(path)))


def check_policy(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return _outcome(path, lambda: load_model_file(path, PolicySpec))


def _outcome(path: Path, load: Any) -> str:
    try:
        load()
    except RunTimeout:  # a hang, for the fuzz run to count: not the file's error
        raise
    except PermallocError as exc:
        message = str(exc)
        assert message.startswith(f"{path}: ") and "\n" not in message, message
        return "refused"
    return "ok"
