"""The machine and the workloads of a report in words, as a kernel developer would write them
in a mail ("x86, 8 CPUs, 16 GiB RAM, ..."), not as a JSON dict."""

from __future__ import annotations

from permalloc.model.spec import MachineSpec
from permalloc.report.quantities import format_bytes, format_count
from permalloc.run.workloads import WorkloadSource


def _plural(n: int, word: str) -> str:
    return f"{format_count(n)} {word}{'' if n == 1 else 's'}"


def describe_machine(spec: MachineSpec) -> str:
    """``x86, 8 CPUs, 16.0 GiB RAM, 1 NUMA node, fresh memory state, seed 0``, with the
    platform, initramfs, CPU features and missing 1 GiB pages when the spec has them."""
    parts = [spec.arch, _plural(spec.cpus, "CPU"), f"{format_bytes(spec.memory)} RAM", _plural(spec.numa_nodes, "NUMA node")]
    if spec.platform:
        parts.append(f"platform {spec.platform}")
    if spec.initrd:
        parts.append(f"{format_bytes(spec.initrd)} initramfs")
    if spec.cpu_features:
        parts.append(f"CPU features {', '.join(sorted(spec.cpu_features))}")
    if not spec.gbpages:
        parts.append("no 1 GiB pages")
    parts.append(f"{spec.memory_state} memory state")
    parts.append(f"seed {spec.seed}")
    return ", ".join(parts)


def describe_workload(source: WorkloadSource) -> str:
    """``Debian linux-image-6.1.0-57-amd64-unsigned 6.1.192-3: kernel 6.1.0-57-amd64, x86_64,
    4,023 modules`` (the distribution is named when the package is a Debian one)."""
    vendor = "Debian " if source.package.startswith("linux-image-") else ""
    return (f"{vendor}{source.package} {source.version}: kernel {source.kernel_release}, {source.machine}, "
            f"{_plural(source.modules, 'module')}")
