"""The system ops: what else a machine does between the loads (here: the first use of tracing)."""

from __future__ import annotations

import os

import pandas as pd
import pytest

from permalloc import Machine, MachineSpec
from permalloc.plugin.pluginmanager import registry_manager
from permalloc.run.scenario import Scenario, op_types, run_handler
from permalloc.run.simulation import RunContext
from permalloc.run.system_ops import RB_MIN_PAGES, TRACE_BUF_SIZE_DEFAULT, ring_buffer_pages
from permalloc.run.validate import Measurement, setup_ops

ARCH = os.environ.get("PERMALLOC_ARCH", "generic")


def run_ops(machine: Machine, ops: list[dict]) -> None:
    registry = op_types(machine.pm)
    ctx = RunContext(machine)
    for op in Scenario(name="t", ops=ops).validated(registry):
        machine.cpu = op.cpu if op.cpu is not None else ctx.task_cpu
        run_handler(registry[op.op], ctx, op)


def test_ring_buffer_pages_follow_the_data_page_size():
    # DIV_ROUND_UP(size, PAGE_SIZE - BUF_PAGE_HDR_SIZE), never fewer than two
    assert ring_buffer_pages(4080 * 353, 4096) == 353
    assert ring_buffer_pages(4080 * 353 + 1, 4096) == 354
    assert ring_buffer_pages(1, 4096) == RB_MIN_PAGES
    assert ring_buffer_pages(TRACE_BUF_SIZE_DEFAULT, 4096) * 4080 >= TRACE_BUF_SIZE_DEFAULT


@pytest.mark.parametrize("nodes", [1, 2])
def test_expanding_takes_every_cpus_pages_on_the_callers_cpu_once(nodes):
    m = Machine(MachineSpec(arch=ARCH, cpus=4, memory="2G", numa_nodes=nodes))
    caller = 1
    before = [pcp.count for pcp in (m.phys.pcp(cpu, z) for cpu in range(4) for z in m.phys.zones)]
    free = m.phys.free_pages()
    run_ops(m, [{"op": "expand_trace_buffers", "cpu": caller}])
    pages = m.state("system_ops.trace", dict)["pages"]
    per_cpu = ring_buffer_pages(TRACE_BUF_SIZE_DEFAULT, m.phys.page_size) - RB_MIN_PAGES
    assert len(pages) == len(set(pages)) == 4 * per_cpu
    assert m.phys.free_pages() == free - 4 * per_cpu
    assert all(m.phys.is_allocated(p) for p in pages)
    # each CPU's buffer is on that CPU's node (alloc_pages_node(cpu_to_node(cpu)))
    for cpu in range(4):
        mine = pages[cpu * per_cpu:(cpu + 1) * per_cpu]
        assert {m.phys.zone_of(p).node for p in mine} == {m.phys.node_of_cpu(cpu)}
    # only the caller's per-CPU lists served them: the other CPUs' lists are as they were
    after = [pcp.count for pcp in (m.phys.pcp(cpu, z) for cpu in range(4) for z in m.phys.zones)]
    zones = len(m.phys.zones)
    for cpu in range(4):
        if cpu != caller:
            assert after[cpu * zones:(cpu + 1) * zones] == before[cpu * zones:(cpu + 1) * zones]
    run_ops(m, [{"op": "expand_trace_buffers", "cpu": 0}])  # ring_buffer_expanded: nothing more
    assert m.phys.free_pages() == free - 4 * per_cpu
    assert m.teardown() == []
    assert m.phys.free_pages() == free


@pytest.mark.parametrize(("info", "ops"), [
    ({"ftrace_filter": "set_memory_ro module_alloc"}, [{"op": "expand_trace_buffers"}]),
    ({"kprobe_events": "p:kprobes/x smp_call_function_many_cond"}, [{"op": "expand_trace_buffers"}]),
    ({"ftrace_filter": " ", "kprobe_events": ""}, []),
    ({"meminfo": "DirectMap4k: 1 kB"}, []),
])
def test_a_measurement_that_traced_grew_the_ring_buffers_first(info, ops):
    assert setup_ops(Measurement(pd.DataFrame(), info)) == ops
    assert all(op["op"] in op_types(registry_manager()) for op in ops)
