"""permalloc: simulate the Linux kernel's permissioned vmalloc and the designs around it.

Plugin authors need only this module: ``from permalloc import hookimpl``.
"""

from permalloc.errors import (
    ContractError,
    IngestError,
    InputError,
    InvariantViolation,
    OutOfMemory,
    OutputError,
    PermallocError,
    PluginError,
    PluginWarning,
    SpecError,
)
from permalloc.machine import Machine
from permalloc.model.archinfo import ArchInfo, VRange
from permalloc.model.events import Event
from permalloc.model.perms import Perm
from permalloc.model.spec import CostModel, MachineSpec, parse_size
from permalloc.plugin.contract import PermAlloc, PermAllocation, State
from permalloc.plugin.hookspecs import hookimpl, hookspec, watching
from permalloc.plugin.policy import PolicySpec

__version__ = "0.1.0"

__all__ = [
    "ArchInfo",
    "ContractError",
    "CostModel",
    "Event",
    "IngestError",
    "InputError",
    "InvariantViolation",
    "Machine",
    "MachineSpec",
    "OutOfMemory",
    "OutputError",
    "Perm",
    "PermAlloc",
    "PermAllocation",
    "PermallocError",
    "PluginError",
    "PluginWarning",
    "PolicySpec",
    "SpecError",
    "State",
    "VRange",
    "__version__",
    "hookimpl",
    "watching",
    "hookspec",
    "parse_size",
]
