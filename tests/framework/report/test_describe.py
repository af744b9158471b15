from __future__ import annotations

from permalloc import MachineSpec
from permalloc.plugin.pluginmanager import registry_manager
from permalloc.report.describe import describe_machine, describe_workload
from permalloc.run.workloads import workloads


def test_the_machine_in_words():
    assert describe_machine(MachineSpec(arch="x86", cpus=2, memory="2G")) == (
        "x86, 2 CPUs, 2 GiB RAM, 1 NUMA node, fresh memory state, seed 0")
    busy = MachineSpec(arch="x86", cpus=1, memory="16G", numa_nodes=2, initrd="32M", gbpages=False,
                       cpu_features=frozenset({"invlpgb"}), memory_state="pagecache-50", seed=3)
    assert describe_machine(busy) == ("x86, 1 CPU, 16 GiB RAM, 2 NUMA nodes, 32 MiB initramfs, CPU features invlpgb, "
                                      "no 1 GiB pages, pagecache-50 memory state, seed 3")


def test_a_bundled_workload_in_words():
    source = workloads(registry_manager())["debian-6.1.0-57-amd64"]
    assert describe_workload(source) == ("Debian linux-image-6.1.0-57-amd64-unsigned 6.1.192-3: kernel 6.1.0-57-amd64, "
                                         "x86_64, 4,023 modules")
