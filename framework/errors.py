"""Errors that the CLI turns into one-line messages and a non-zero exit."""


class PermallocError(Exception):
    """Base class: the message is one line and names the thing at fault."""


class SpecError(PermallocError):
    """An invalid machine spec, policy or scenario value (names the field)."""


class PluginError(PermallocError):
    """A plugin failed to load, raised inside a hook, or returned the wrong type."""


class ContractError(PermallocError):
    """A caller broke the perm_alloc contract (e.g. wrote to a finished allocation)."""


class OutOfMemory(PermallocError):
    """The simulated machine ran out of physical pages or of a virtual range."""


class InvariantViolation(PermallocError):
    """Strict mode: an invariant (W^X across aliases, no leaks) was broken."""
