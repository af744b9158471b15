from __future__ import annotations

import pytest
from pydantic import ValidationError

from permalloc import MachineSpec, parse_size


@pytest.mark.parametrize(
    ("text", "value"),
    [("16G", 16 << 30), ("512MiB", 512 << 20), ("4T", 4 << 40), (4096, 4096), ("1.5G", 3 << 29)],
)
def test_parse_size(text, value):
    assert parse_size(text) == value


@pytest.mark.parametrize("bad", ["lots", "-1G", True, "16X"])
def test_parse_size_rejects(bad):
    with pytest.raises(ValueError):
        parse_size(bad)


def test_spec_is_frozen_and_validated():
    spec = MachineSpec(memory="8G", cpus=2)
    assert spec.memory == 8 << 30
    with pytest.raises(ValidationError):
        spec.cpus = 4
    with pytest.raises(ValidationError, match="memory_state"):
        MachineSpec(memory_state="pagecache-150")
    with pytest.raises(ValidationError, match="extra"):
        MachineSpec(cpu=4)


def test_schema_names_every_field():
    schema = MachineSpec.model_json_schema()
    assert {"arch", "cpus", "memory", "numa_nodes", "platform", "initrd", "memory_state", "gbpages", "seed", "cost"} <= set(schema["properties"])
