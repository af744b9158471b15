"""The ELF machines ingest reads come from the arch plugins, and a bad contribution is named."""

from __future__ import annotations

import pytest

from permalloc import hookimpl
from permalloc.arches.x86.elf import X86_64
from permalloc.errors import PluginError
from permalloc.plugin.pluginmanager import registry_manager
from permalloc.plugins.module_loader.elfmachines import elf_machine, elf_machines
from permalloc.plugins.module_loader.ingest import IngestError, ingest_file


class _Twice:
    @hookimpl
    def permalloc_elf_machines(self):
        return [X86_64]


class _Wrong:
    @hookimpl
    def permalloc_elf_machines(self):
        return ["EM_X86_64"]


def test_the_installed_arches_contribute_their_machines():
    machines = elf_machines()
    assert machines["EM_X86_64"] is X86_64
    assert elf_machine(registry_manager(), "x86_64") is X86_64
    assert elf_machine(registry_manager(), "sparc64") is None


@pytest.mark.parametrize(("plugin", "message"), [
    (_Twice(), "ELF machine EM_X86_64 is already contributed by x86"),
    (_Wrong(), "permalloc_elf_machines returned str, expected ElfMachine"),
])
def test_a_bad_contribution_names_the_plugin(plugin, message):
    with pytest.raises(PluginError, match=message):
        elf_machines(registry_manager([plugin]))


def test_without_the_machine_a_module_is_refused_as_elf_check_arch_does(objects):
    with pytest.raises(IngestError, match="wrong machine: EM_X86_64, expected a machine some arch plugin"):
        ingest_file(objects.mod_a, machines={})
    assert ingest_file(objects.mod_a, machines={"EM_X86_64": X86_64}).machine == "x86_64"
