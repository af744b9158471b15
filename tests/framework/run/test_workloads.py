"""The workload registry: header lines, plugins' workloads, which workload a policy runs on."""

from __future__ import annotations

import gzip
import json

import pluggy
import pytest

from permalloc import PluginWarning, PolicySpec, SpecError, hookimpl
from permalloc.plugin import hookspecs
from permalloc.run.workloads import (
    FORMAT,
    FORMAT_VERSION,
    WorkloadSource,
    header_line,
    policy_workload,
    read_header,
    resolve_workload,
    workloads,
)


def _write(path, header: str, body: dict) -> None:
    text = header + "\n" + json.dumps(body) + "\n"
    if path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(text.encode()))
    else:
        path.write_text(text)


def _file(tmp_path, name: str, release: str, modules: int = 3, machine: str = "x86_64"):
    path = tmp_path / f"{name}.json.gz"
    _write(path, header_line("linux-image-x", "1", release, machine, modules), {"modules": []})
    return path


def test_the_header_line_describes_the_file(tmp_path):
    path = _file(tmp_path, "debian-9.9-amd64", "9.9.1-amd64", modules=42)
    source = read_header(path)
    assert source == WorkloadSource(name="debian-9.9-amd64", path=path, package="linux-image-x", version="1",
                                    kernel_release="9.9.1-amd64", machine="x86_64", modules=42, origin="file")
    assert source.kernel == (9, 9)
    plain = tmp_path / "hand.json"  # a pretty-printed Workload.model_dump(): no header line
    plain.write_text(json.dumps({"package": "p", "version": "v", "kernel_release": "6.1.0-x",
                                 "modules": {"a": {}, "b": {}}}, indent=2))
    described = read_header(plain)
    assert (described.name, described.modules, described.machine, described.kernel) == ("hand", 2, "x86_64", (6, 1))


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a workload file"),
        (gzip.compress(b"\x00\x01garbage"), "not a workload file"),
        (b"\x1f\x8bnot really gzip", "not a workload file"),
        (json.dumps({"format": FORMAT, "format_version": 1, "modules": []}).encode(),
         "format_version 1, this permalloc reads 3: regenerate it with `permalloc ingest`"),
    ],
)
def test_bad_files_are_one_line_errors(tmp_path, content, message):
    path = tmp_path / "bad.json.gz"
    path.write_bytes(content)
    with pytest.raises(SpecError, match="workload|format_version") as exc:
        read_header(path)
    assert message in str(exc.value) and str(path) in str(exc.value) and "\n" not in str(exc.value)


def test_a_newer_header_is_refused(tmp_path):
    path = tmp_path / "new.json.gz"
    header = json.loads(header_line("p", "v", "6.1.0", "x86_64", 1))
    _write(path, json.dumps({**header, "format_version": FORMAT_VERSION + 1}), {})
    with pytest.raises(SpecError, match=f"format_version {FORMAT_VERSION + 1}"):
        read_header(path)


class _Kernels:
    """A plugin that registers workloads of the given kernel releases."""

    def __init__(self, tmp_path, *releases: str) -> None:
        self.sources = [read_header(_file(tmp_path, f"k-{r}", r), origin="test") for r in releases]

    @hookimpl
    def permalloc_register_workloads(self):
        return self.sources


def _pm(*plugins) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    for plugin in plugins:
        pm.register(plugin)
    return pm


def test_registry_lists_what_plugins_register(tmp_path):
    pm = _pm(_Kernels(tmp_path, "6.1.0-57-amd64", "6.12.118+deb12-amd64"))
    assert list(workloads(pm)) == ["k-6.1.0-57-amd64", "k-6.12.118+deb12-amd64"]
    assert resolve_workload(pm, "k-6.1.0-57-amd64").kernel == (6, 1)
    assert resolve_workload(pm, str(tmp_path / "k-6.1.0-57-amd64.json.gz")).origin == "file"
    with pytest.raises(SpecError, match="unknown workload 'nope'; known workloads: k-6.1.0-57-amd64, k-6.12"):
        resolve_workload(pm, "nope")

    class Wrong:
        @hookimpl
        def permalloc_register_workloads(self):
            return ["not a source"]

    with pytest.warns(PluginWarning, match="permalloc_register_workloads returned str, expected a list of WorkloadSource"):
        assert workloads(_pm(Wrong(), _Kernels(tmp_path, "6.1.0-57-amd64"))) == {
            "k-6.1.0-57-amd64": resolve_workload(pm, "k-6.1.0-57-amd64")}  # the others are kept


@pytest.mark.parametrize(
    ("kernel", "expected"),
    [("6.1", "6.1.0-57-amd64"), ("6.12", "6.12.118+deb12-amd64"), ("5.10", "6.1.0-57-amd64"),
     ("7.3", "6.12.118+deb12-amd64")],
)
def test_a_policy_runs_on_its_kernel_else_the_newest_older_else_the_oldest(tmp_path, kernel, expected):
    pm = _pm(_Kernels(tmp_path, "6.12.118+deb12-amd64", "6.1.0-57-amd64"))
    assert policy_workload(pm, PolicySpec(name="p", kernel=kernel)).kernel_release == expected


def test_a_policy_can_name_its_workload(tmp_path):
    pm = _pm(_Kernels(tmp_path, "6.1.0-57-amd64", "6.12.118+deb12-amd64"))
    named = PolicySpec(name="p", kernel="6.1", workload="k-6.12.118+deb12-amd64")
    assert policy_workload(pm, named).kernel_release == "6.12.118+deb12-amd64"
    with pytest.raises(SpecError, match="policy 'p': unknown workload 'k-9'"):
        policy_workload(pm, PolicySpec(name="p", workload="k-9"))
    assert policy_workload(_pm(), PolicySpec(name="p")) is None  # nothing registered
