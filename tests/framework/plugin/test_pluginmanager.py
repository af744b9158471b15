from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from permalloc import Machine, MachineSpec, PluginError, hookimpl
from permalloc.plugin.pluginmanager import BUILTIN_PLUGINS, builtin_arches, discover, registry_manager


class Misspelled:
    name = "misspelled"

    @hookimpl
    def permalloc_alocc(self, machine):  # not a hook: check_pending must catch it
        return None


class Raising:
    name = "raising"

    @hookimpl(tryfirst=True)
    def permalloc_alloc(self, machine, size, perm, vrange):
        raise RuntimeError("boom")


class WrongType:
    name = "wrongtype"

    @hookimpl(tryfirst=True)
    def permalloc_alloc(self, machine, size, perm, vrange):
        return "not an allocation"


def test_misspelled_hook_names_the_plugin():
    with pytest.raises(PluginError, match=r"plugin 'misspelled'.*permalloc_alocc"):
        registry_manager([Misspelled()])


def test_raising_plugin_names_plugin_and_hook():
    m = Machine(MachineSpec(memory="1G"), plugins=[Raising()])
    with pytest.raises(PluginError, match=r"plugin 'raising' raised in permalloc_alloc: RuntimeError: boom"):
        m.perm.alloc(4096, "RX")


class RaisingDescribe:
    name = "raising-describe"

    @hookimpl
    def permalloc_arch_describe(self, spec):
        raise KeyError("ranges")


class RaisingApplies:
    name = "raising-applies"

    @hookimpl
    def permalloc_applies(self, arch):
        raise AttributeError("no such feature")


@pytest.mark.parametrize(("plugin", "hook", "error"), [
    (RaisingDescribe(), "permalloc_arch_describe", "KeyError: 'ranges'"),
    (RaisingApplies(), "permalloc_applies", "AttributeError: no such feature"),
])
def test_hooks_called_per_implementation_name_a_raising_plugin_too(plugin, hook, error):
    # the framework calls these implementations itself, before the per-machine guard
    with pytest.raises(PluginError, match=rf"plugin '{plugin.name}' raised in {hook}: {error}"):
        Machine(MachineSpec(memory="1G"), plugins=[plugin])


def test_wrong_return_type_names_the_plugin():
    m = Machine(MachineSpec(memory="1G"), plugins=[WrongType()])
    with pytest.raises(PluginError, match=r"plugin 'wrongtype': permalloc_alloc returned str, expected PermAllocation"):
        m.perm.alloc(4096, "RX")


def test_unknown_arch_lists_the_known_ones():
    with pytest.raises(PluginError, match=r"unknown arch 'vax'; known arches: .*generic"):
        Machine(MachineSpec(arch="vax", memory="1G"))


def test_builtins_are_registered_like_third_party_plugins():
    records = {r.name: r for r in discover()}
    for name, module in BUILTIN_PLUGINS:
        assert records[name].plugin.__name__ == module
        assert records[name].origin == "entry point"  # the installed package's entry points


def test_builtin_arches_are_the_subpackages_of_the_arches_folder():
    import permalloc.arches

    folder = Path(permalloc.arches.__path__[0])
    on_disk = sorted(p.parent.name for p in folder.glob("*/__init__.py") if not p.parent.name.startswith("_"))
    assert [name for name, _ in builtin_arches()] == on_disk and {"generic", "x86", "arm64"} <= set(on_disk)
    records = {r.name: r for r in discover()}
    for name, module in builtin_arches():
        assert records[name].plugin.__name__ == module and records[name].origin == "builtin"
        assert records[name].dist == "permalloc"  # shipped by permalloc, as the entry points say of the others
    assert not any(module.startswith("permalloc.arches") for _, module in BUILTIN_PLUGINS)
    names = [r.name for r in discover()]
    assert names == sorted(names) and len(names) == len(set(names))  # name order, each name once


def test_an_entry_point_cannot_take_a_builtin_arch_name(monkeypatch):
    import importlib.metadata
    import types

    from permalloc.plugin import pluginmanager

    impostor = types.ModuleType("impostor")
    fake = [_EntryPoint("x86", "impostor", lambda: impostor, "impostor-pkg")]
    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group=None: [*real(group=group), *fake] if group == "permalloc" else real(group=group))
    pluginmanager.discover.cache_clear()
    try:
        x86 = [r for r in discover() if r.name == "x86"]
        assert [(r.origin, r.error) for r in x86] == [
            ("builtin", ""), ("entry point", "the name 'x86' is already taken by permalloc")]
        assert registry_manager().get_plugin("x86").__name__ == "permalloc.arches.x86"
    finally:
        pluginmanager.discover.cache_clear()


def test_each_machine_has_its_own_manager_with_one_arch(arch):
    m1 = Machine(MachineSpec(arch=arch, memory="1G"))
    m2 = Machine(MachineSpec(arch="generic", memory="1G"))
    assert m1.pm is not m2.pm
    arches = {impl.plugin_name for impl in m2.pm.hook.permalloc_arch_describe.get_hookimpls()}
    assert arches == {"generic"}


class _EntryPoint:
    """A stand-in for importlib.metadata.EntryPoint."""

    def __init__(self, name: str, value: str, load, dist: str) -> None:
        self.name, self.value, self._load = name, value, load
        self.dist = type("Dist", (), {"name": dist, "version": "1.0"})()

    def load(self):
        return self._load()


def test_a_broken_or_duplicate_plugin_is_left_out_and_named(monkeypatch, capsys):
    import importlib.metadata
    import types

    from permalloc.cli import main
    from permalloc.plugin import pluginmanager

    def fails():
        raise ImportError("No module named 'missing_dep'")

    good = types.ModuleType("dup_a")
    other = types.ModuleType("dup_b")
    fake = [_EntryPoint("broken", "broken_pkg:plugin", fails, "broken-pkg"),
            _EntryPoint("dup", "dup_a", lambda: good, "pkg-a"),
            _EntryPoint("dup", "dup_b", lambda: other, "pkg-b")]
    real = importlib.metadata.entry_points
    monkeypatch.setattr(importlib.metadata, "entry_points",
                        lambda group=None: [*real(group=group), *fake] if group == "permalloc" else real(group=group))
    pluginmanager.discover.cache_clear()
    try:
        broken = {r.dist: r.error for r in pluginmanager.broken_plugins()}
        assert broken == {
            "broken-pkg": "failed to load broken_pkg:plugin: ImportError: No module named 'missing_dep'",
            "pkg-b": "the name 'dup' is already taken by pkg-a"}
        assert main(["plugins", "--json"]) == 0
        rows = {r["origin"]: r for r in json.loads(capsys.readouterr().out)}
        assert rows["entry point (broken-pkg)"]["kind"] == "broken" and rows["entry point (pkg-a)"]["kind"] != "broken"
        assert main(["policies"]) == 0  # every other command keeps working, with a warning
        err = capsys.readouterr().err.splitlines()
        assert err == ["permalloc: warning: plugin 'broken' left out: failed to load broken_pkg:plugin: ImportError: "
                       "No module named 'missing_dep'",
                       "permalloc: warning: plugin 'dup' left out: the name 'dup' is already taken by pkg-a"]
    finally:
        pluginmanager.discover.cache_clear()


def test_a_plugin_whose_commands_raise_leaves_the_others_working(monkeypatch, capsys):
    from permalloc import hookimpl
    from permalloc.cli import main
    from permalloc.plugin import pluginmanager

    class BadCommands:
        @hookimpl
        def permalloc_add_commands(self, subparsers):
            raise RuntimeError("boom")

    real = pluginmanager.registry_manager
    monkeypatch.setattr("permalloc.cli.registry_manager", lambda extra=(): real([BadCommands(), *extra]))
    assert main(["policies"]) == 0
    err = capsys.readouterr().err
    assert re.fullmatch(r"permalloc: warning: plugin .BadCommands-\w+.: permalloc_add_commands raised RuntimeError: boom; "
                        r"its commands are left out\n", err)
