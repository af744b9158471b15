"""permalloc: simulate the Linux kernel's permissioned vmalloc and the designs around it.

Plugin authors need only this module: ``from permalloc import hookimpl``.
"""

from .archinfo import ArchInfo, VRange
from .contract import PermAlloc, PermAllocation, State
from .errors import (
    ContractError,
    InvariantViolation,
    OutOfMemory,
    PermallocError,
    PluginError,
    SpecError,
)
from .events import Event
from .hookspecs import hookimpl, hookspec
from .machine import Machine
from .perms import Perm
from .policy import PolicySpec
from .spec import CostModel, MachineSpec, parse_size

__version__ = "0.1.0"

__all__ = [
    "ArchInfo",
    "ContractError",
    "CostModel",
    "Event",
    "InvariantViolation",
    "Machine",
    "MachineSpec",
    "OutOfMemory",
    "Perm",
    "PermAlloc",
    "PermAllocation",
    "PermallocError",
    "PluginError",
    "PolicySpec",
    "SpecError",
    "State",
    "VRange",
    "__version__",
    "hookimpl",
    "hookspec",
    "parse_size",
]
