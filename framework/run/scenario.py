"""Scenarios: ordered lists of ops, written as JSON or TOML and validated by pydantic.

The core defines the raw contract ops; plugins add theirs (``load_module``, ``load_bpf``,
``static_key`` ...) through ``permalloc_register_ops``. The core knows none of them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator, model_validator

from permalloc.errors import PermallocError, PluginError, SpecError
from permalloc.model.perms import Perm
from permalloc.run.modelfile import format_validation_error, load_model_file

if TYPE_CHECKING:
    from permalloc.run.simulation import RunContext


class Op(BaseModel):
    """Base of every op model: frozen, unknown fields rejected. ``cpu`` runs the op on that
    CPU instead of the scenario task's (per-CPU page lists are per CPU)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    cpu: int | None = Field(None, ge=0, description="the CPU the op runs on (default: the task's)")


def _perm(value: Any) -> str:
    perm = Perm.parse(value)
    if perm.is_wx:
        raise ValueError("W and X together break W^X: use R, RW or RX")
    if perm == Perm.NONE:
        raise ValueError("NONE cannot be allocated")
    return str(perm)


class AllocOp(Op):
    op: Literal["alloc"]
    id: str
    size: int = Field(gt=0, le=1 << 32)
    perm: str
    range: str = "module"
    _v = field_validator("perm")(classmethod(lambda cls, v: _perm(v)))


class WriteOp(Op):
    op: Literal["write"]
    id: str
    offset: int = Field(0, ge=0)
    length: int | None = Field(None, gt=0, description="bytes; default: to the end")


class FinishOp(Op):
    op: Literal["finish"]
    id: str


class ChangeOp(Op):
    op: Literal["change"]
    id: str
    perm: str
    _v = field_validator("perm")(classmethod(lambda cls, v: _perm(v)))


class PokeOp(Op):
    op: Literal["poke"]
    id: str
    offset: int = Field(0, ge=0)
    length: int = Field(gt=0, le=1 << 20)


class FreeOp(Op):
    op: Literal["free"]
    id: str


class AdvanceOp(Op):
    op: Literal["advance"]
    ms: float = Field(ge=0)


class PressureOp(Op):
    op: Literal["pressure"]
    pages: int = Field(ge=0)


@dataclass(frozen=True)
class OpType:
    """A scenario op: its name, pydantic model, handler and per-op metrics kind.

    ``handler(ctx, op)`` carries the op out. Its metrics are recorded under ``kind`` (the op
    name by default) unless ``self_measured``: then the handler calls ``ctx.measure(kind)``
    itself (e.g. one ``module_load`` per module, dependencies included).
    """

    name: str
    model: type[Op]
    handler: Callable[[RunContext, Any], None]
    kind: str | None = None
    description: str = ""
    self_measured: bool = False
    plugin: str = ""  # who registered it (set by op_types; named when its handler fails)

    @property
    def metrics_kind(self) -> str:
        return self.kind or self.name


@dataclass(frozen=True)
class ScenarioSource:
    """A named scenario contributed by a plugin; ``build()`` returns a :class:`Scenario`."""

    name: str
    description: str
    build: Callable[[], Scenario]


class Phase(BaseModel):
    """A named part of a scenario, from op ``start`` to the next phase (or the end): reports
    mark it on the timeline (``boot``, ``bpf-churn``, ``tracing`` in the default scenario)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1)
    start: int = Field(ge=0, description="index of the phase's first op")


class Scenario(BaseModel):
    """A named list of ops, optionally in named ``phases``. ``ops`` stay raw dicts until
    validated against the op registry."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    description: str = ""
    ops: list[dict[str, Any]]
    phases: list[Phase] = Field(default_factory=list, description="named parts, in op order (default: none)")

    @model_validator(mode="after")
    def _phases_in_order(self) -> Scenario:
        starts = [phase.start for phase in self.phases]
        if starts != sorted(set(starts)):
            raise ValueError("phases: each phase starts after the one before it")
        if starts and starts[-1] >= len(self.ops):
            raise ValueError(f"phases: phase {self.phases[-1].name!r} starts at op {starts[-1]}, past the last op "
                             f"({len(self.ops) - 1})")
        return self

    def validated(self, registry: dict[str, OpType], origin: str = "") -> list[Op]:
        """Validate every op; the first bad one is reported by index and field, on one line."""
        where = origin or f"scenario {self.name!r}"
        for index, raw in enumerate(self.ops):
            name = raw.get("op") if isinstance(raw, dict) else None
            if not isinstance(name, str) or name not in registry:  # {"op": []} too (found by modelfuzz)
                known = ", ".join(sorted(registry))
                raise SpecError(f"{where}: ops[{index}].op: unknown op {name!r}; known ops: {known}")
        adapter = _adapter(tuple(op.model for op in registry.values()))
        try:
            return adapter.validate_python(self.ops)
        except ValidationError as exc:
            raise SpecError(f"{where}: {format_validation_error(exc, prefix='ops', tagged=len(registry) > 1)}") from None


_ADAPTERS: dict[tuple[type, ...], TypeAdapter] = {}


def _adapter(models: tuple[type[Op], ...]) -> TypeAdapter:
    adapter = _ADAPTERS.get(models)
    if adapter is None:
        union = Annotated[Union[models], Field(discriminator="op")] if len(models) > 1 else models[0]  # noqa: UP007
        adapter = _ADAPTERS[models] = TypeAdapter(list[union])
    return adapter


BUILTIN_OPS: tuple[tuple[type[Op], str], ...] = (
    (AllocOp, "perm_alloc: reserve memory of a final permission"),
    (WriteOp, "store through the writable (staging) address"),
    (FinishOp, "make the allocation live at its final permission"),
    (ChangeOp, "change a live allocation's permission"),
    (PokeOp, "patch live text (text_poke style)"),
    (FreeOp, "free an allocation"),
    (AdvanceOp, "let simulated time pass"),
    (PressureOp, "memory pressure: run the shrinkers"),
)


def load_scenario_file(path: str | Path) -> Scenario:
    """Read a scenario from a .json or .toml file (one-line errors name the file)."""
    return load_model_file(path, Scenario)


def op_types(pm: Any) -> dict[str, OpType]:
    """Every op the plugins of ``pm`` register (permalloc_register_ops), each knowing its plugin;
    a plugin whose registration fails is named and left out."""
    from permalloc.plugin.pluginmanager import collect

    return op_registry(dataclasses.replace(t, plugin=name) for name, t in collect(pm, "permalloc_register_ops", OpType))


def run_handler(optype: OpType, ctx: RunContext, op: Op) -> None:
    """Carry out ``op``: a handler's own errors pass; anything else it raises names its plugin."""
    try:
        optype.handler(ctx, op)
    except (PermallocError, KeyboardInterrupt):
        raise
    except Exception as exc:
        raise PluginError(f"plugin {optype.plugin or '?'!r}: the handler of op {optype.name!r} raised "
                          f"{type(exc).__name__}: {' '.join(str(exc).split())}") from exc


def op_registry(types: Iterable[OpType]) -> dict[str, OpType]:
    registry: dict[str, OpType] = {}
    for optype in types:
        if optype.name in registry:
            raise SpecError(f"op {optype.name!r} is registered twice")
        registry[optype.name] = optype
    return registry
