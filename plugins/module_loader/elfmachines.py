"""The ELF machines ingest can read: those the installed arch plugins contribute."""

from __future__ import annotations

import pluggy

from permalloc.errors import PermallocError, PluginError
from permalloc.model.elfmachine import ElfMachine

__all__ = ["Machines", "elf_machine", "elf_machines"]

#: e_machine (pyelftools' name) -> the machine
Machines = dict[str, ElfMachine]


def elf_machines(pm: pluggy.PluginManager | None = None) -> Machines:
    """Every machine of ``permalloc_elf_machines`` (default: all installed plugins), by e_machine.

    A plugin that contributes something else, or a machine another plugin already has, is a
    PluginError naming it."""
    if pm is None:
        from permalloc.plugin.pluginmanager import registry_manager

        pm = registry_manager()
    out: Machines = {}
    owner: dict[str, str] = {}
    for impl in pm.hook.permalloc_elf_machines.get_hookimpls():
        try:
            found = impl.function()
        except PermallocError:
            raise
        except Exception as exc:
            raise PluginError(f"plugin {impl.plugin_name!r} raised in permalloc_elf_machines: "
                              f"{type(exc).__name__}: {exc}") from exc
        if found is not None and not isinstance(found, (list, tuple)):
            raise PluginError(f"plugin {impl.plugin_name!r}: permalloc_elf_machines returned "
                              f"{type(found).__name__}, expected a list of ElfMachine")
        for machine in found or ():
            if not isinstance(machine, ElfMachine):
                raise PluginError(f"plugin {impl.plugin_name}: permalloc_elf_machines returned "
                                  f"{type(machine).__name__}, expected ElfMachine")
            if machine.e_machine in out:
                raise PluginError(f"plugin {impl.plugin_name}: ELF machine {machine.e_machine} is "
                                  f"already contributed by {owner[machine.e_machine]}")
            out[machine.e_machine] = machine
            owner[machine.e_machine] = impl.plugin_name
    return out


def elf_machine(pm: pluggy.PluginManager, name: str) -> ElfMachine | None:
    """The machine named ``name`` (``uname -m``) among those ``pm``'s plugins contribute."""
    return next((m for m in elf_machines(pm).values() if m.name == name), None)
