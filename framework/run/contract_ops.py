"""The raw contract ops of scenarios (alloc, write, finish, change, poke, free, advance,
pressure), registered as a built-in plugin exactly like the ops of other plugins."""

from __future__ import annotations

from typing import TYPE_CHECKING

from permalloc.plugin.hookspecs import hookimpl
from permalloc.run.scenario import (
    BUILTIN_OPS,
    AdvanceOp,
    AllocOp,
    ChangeOp,
    FinishOp,
    FreeOp,
    OpType,
    PokeOp,
    PressureOp,
    WriteOp,
)

if TYPE_CHECKING:
    from permalloc.run.simulation import RunContext

__version__ = "1.0"


def _alloc(ctx: RunContext, op: AllocOp) -> None:
    if op.id in ctx.allocs:
        raise ctx.error(f"alloc: id {op.id!r} is already in use")
    ctx.allocs[op.id] = ctx.machine.perm.alloc(op.size, op.perm, op.range)


def _write(ctx: RunContext, op: WriteOp) -> None:
    alloc = ctx.alloc(op.id)
    length = op.length if op.length is not None else alloc.size - op.offset
    ctx.machine.perm.write(alloc, op.offset, length)


def _finish(ctx: RunContext, op: FinishOp) -> None:
    ctx.machine.perm.finish(ctx.alloc(op.id))


def _change(ctx: RunContext, op: ChangeOp) -> None:
    ctx.machine.perm.change(ctx.alloc(op.id), op.perm)


def _poke(ctx: RunContext, op: PokeOp) -> None:
    ctx.machine.perm.poke(ctx.alloc(op.id), op.offset, op.length)


def _free(ctx: RunContext, op: FreeOp) -> None:
    ctx.machine.perm.free(ctx.alloc(op.id))
    del ctx.allocs[op.id]


def _advance(ctx: RunContext, op: AdvanceOp) -> None:
    ctx.machine.now_ms += op.ms


def _pressure(ctx: RunContext, op: PressureOp) -> None:
    ctx.machine.perm.shrink(op.pages)


_HANDLERS = {
    AllocOp: _alloc,
    WriteOp: _write,
    FinishOp: _finish,
    ChangeOp: _change,
    PokeOp: _poke,
    FreeOp: _free,
    AdvanceOp: _advance,
    PressureOp: _pressure,
}


@hookimpl
def permalloc_register_ops() -> list[OpType]:
    return [
        OpType(model.model_fields["op"].annotation.__args__[0], model, _HANDLERS[model], description=text)
        for model, text in BUILTIN_OPS
    ]
