"""Shared fixtures. Tests import the installed ``permalloc`` (tox installs the package);
``--import-mode=importlib`` keeps the raw folders off sys.path."""

from __future__ import annotations

import os

import pytest
from hypothesis import settings

from permalloc import Machine, MachineSpec, PolicySpec, hookimpl

# the same examples on every run (a CI failure reproduces); benchmarks/fuzz.py explores at random
settings.register_profile("permalloc", derandomize=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "permalloc"))


@pytest.fixture
def arch() -> str:
    """The arch under test: tox sets PERMALLOC_ARCH per env (py3-generic, py3-x86, py3-arm64)."""
    return os.environ.get("PERMALLOC_ARCH", "generic")


@pytest.fixture
def flavour(arch: str) -> str:
    """Debian's name for the arch's bundled workloads (debian-6.1.0-57-<flavour>)."""
    return "arm64" if arch == "arm64" else "amd64"


@pytest.fixture
def make_machine(arch: str):
    def make(policy: PolicySpec | None = None, strict: bool = False, **spec) -> Machine:
        spec.setdefault("arch", arch)
        spec.setdefault("memory", 1 << 30)
        spec.setdefault("cpus", 4)
        return Machine(MachineSpec(**spec), policy, strict=strict)

    return make


class SetMemorySpy:
    """Records every set_memory_* call after boot as (name, addr, npages), then lets the arch
    do it (boot's own calls, e.g. for the kernel's BPF program, are not the test's)."""

    name = "spy"

    def __init__(self) -> None:
        self.calls: list[tuple[str, int, int]] = []

    @hookimpl(tryfirst=True)
    def permalloc_set_memory(self, machine, addr, npages, source):
        if not machine.booting:
            self.calls.append((source, addr, npages))

    @property
    def names(self) -> list[str]:
        return [name for name, _, _ in self.calls]


@pytest.fixture
def set_memory_spy() -> SetMemorySpy:
    return SetMemorySpy()


FAULTY_PACKAGE = os.path.join(os.path.dirname(__file__), "faulty_plugin")


@pytest.fixture
def faulty_plugins(tmp_path, monkeypatch):
    """``enable(*entry_point_names)``: make those plugins of tests/faulty_plugin discoverable
    through entry points, as if installed: a dist-info directory on sys.path (in this
    process) and the environment to give a subprocess (returned)."""
    import tomllib

    from permalloc.plugin import pluginmanager

    with open(os.path.join(FAULTY_PACKAGE, "pyproject.toml"), "rb") as fh:
        points = tomllib.load(fh)["project"]["entry-points"]["permalloc"]

    def enable(*names: str) -> dict[str, str]:
        site = tmp_path / "faulty-site"
        dist = site / "permalloc_faulty-0.1.0.dist-info"
        dist.mkdir(parents=True, exist_ok=True)
        (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: permalloc-faulty\nVersion: 0.1.0\n")
        (dist / "entry_points.txt").write_text("[permalloc]\n" + "".join(f"{n} = {points[n]}\n" for n in names))
        monkeypatch.syspath_prepend(FAULTY_PACKAGE)
        monkeypatch.syspath_prepend(str(site))
        pluginmanager.discover.cache_clear()
        path = os.pathsep.join(p for p in (str(site), FAULTY_PACKAGE, os.environ.get("PYTHONPATH")) if p)
        return {**os.environ, "PYTHONPATH": path}

    yield enable
    pluginmanager.discover.cache_clear()
