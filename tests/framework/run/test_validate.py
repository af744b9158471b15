"""permalloc validate: the replayed task's CPU, and the bundled Debian 6.1 calibration run."""

from __future__ import annotations

from pathlib import Path

import pytest

from permalloc.plugin.pluginmanager import registry_manager
from permalloc.run.registry import policies
from permalloc.run.validate import MeasurementError, sending_cpu, validate

CALIBRATION = Path(__file__).parents[3] / "examples" / "calibration"


@pytest.mark.parametrize(("column", "previous", "cpu"), [
    ("0:10", 1, 0),  # CPU 1 took the broadcasts: CPU 0 sent them
    ("13:3", 0, 1),
    ("0:0", 1, 1),  # no broadcast in the window: the task stayed
    ("5:5", 0, 0),  # no single sender
    ("", 1, 1),
    ("0:4:4:4", 2, 0),
    ("1:3", 1, 0),
])
def test_sending_cpu(column, previous, cpu):
    cpus = column.count(":") + 1 if column else 2
    assert sending_cpu({"cal_per_cpu": column}, cpus, previous) == cpu


def test_sending_cpu_ignores_a_column_of_another_cpu_count():
    assert sending_cpu({"cal_per_cpu": "0:9:9"}, 2, 1) == 1


@pytest.fixture(scope="module")
def report():
    if not (CALIBRATION / "debian-6.1.0-56-2cpu-2g-modules.csv").exists():
        pytest.fail(f"{CALIBRATION}: the bundled calibration data is missing")
    pm = registry_manager()
    return validate([CALIBRATION], pm, policies(pm))


def test_the_idle_machine_boots_with_the_measured_directmap_lines(report):
    for line, values in report["boot"].items():
        measured, simulated = values["measured_kb"], values["simulated_kb"]
        assert abs(simulated - measured) <= 0.05 * max(measured, 1), line


def test_module_loads_flush_like_the_measured_kernel(report):
    flushes = report["events"]["mod_load"]["quantities"]["kflush_bcast"]
    assert abs(flushes["simulated"]["median"] - flushes["measured"]["median"]) <= 1
    assert abs(flushes["simulated"]["mean"] - flushes["measured"]["mean"]) <= 0.1 * flushes["measured"]["mean"]


def test_module_loads_split_direct_map_pages(report):
    splits = report["events"]["mod_load"]["quantities"]["l2split_delta"]
    measured, simulated = splits["measured"]["sum"], splits["simulated"]["sum"]
    assert abs(simulated - measured) <= 0.35 * measured
    assert report["events"]["mod_unload"]["quantities"]["l2split_delta"]["simulated"]["sum"] == 0


def test_a_cpu_the_machine_lacks_is_refused():
    pm = registry_manager()
    with pytest.raises(MeasurementError, match="--cpu 7"):
        validate([CALIBRATION], pm, policies(pm), cpu=7)
