"""What ``permalloc hooks -v`` says of each hook, derived from the hook specifications.

Everything comes from a real source: the signature from the hookspec function
(:func:`inspect.signature`), the family from :data:`~permalloc.plugin.hookspecs.FAMILIES`,
firstresult/historic from pluggy's hookspec options (``pm.hook.NAME.spec.opts``), the
implementations (and their tryfirst/trylast) from the plugins registered in ``pm``, and
the documentation from the hookspec's docstring.
"""

from __future__ import annotations

import inspect
from dataclasses import asdict, dataclass, field
from typing import Any

import pluggy

from permalloc.plugin import hookspecs


@dataclass(frozen=True)
class Implementation:
    plugin: str
    tryfirst: bool = False
    trylast: bool = False
    wrapper: bool = False

    def label(self) -> str:
        flags = [flag for flag in ("tryfirst", "trylast", "wrapper") if getattr(self, flag)]
        return f"{self.plugin} ({', '.join(flags)})" if flags else self.plugin


@dataclass(frozen=True)
class HookInfo:
    name: str
    family: str
    signature: str
    firstresult: bool
    historic: bool
    doc: str
    advice: str
    implementations: list[Implementation] = field(default_factory=list)

    @property
    def summary(self) -> str:
        """The docstring's first paragraph, on one line."""
        return " ".join(self.doc.split("\n\n")[0].split())

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def hook_names() -> list[str]:
    """Every hook of the specification, in the order of hookspecs.py."""
    functions = [value for name, value in vars(hookspecs).items() if name.startswith("permalloc_") and callable(value)]
    return [f.__name__ for f in sorted(functions, key=lambda f: f.__code__.co_firstlineno)]


def signature(name: str) -> str:
    """``name(arg: Type, ...) -> Return``, with the annotations as hookspecs.py writes them."""
    sig = inspect.signature(getattr(hookspecs, name))

    def annotation(value: Any) -> str:
        return value if isinstance(value, str) else inspect.formatannotation(value)

    params = ", ".join(
        p.name if p.annotation is inspect.Parameter.empty else f"{p.name}: {annotation(p.annotation)}"
        for p in sig.parameters.values()
    )
    returns = "" if sig.return_annotation is inspect.Signature.empty else f" -> {annotation(sig.return_annotation)}"
    return f"{name}({params}){returns}"


def _implementations(pm: pluggy.PluginManager, name: str) -> list[Implementation]:
    """In pluggy's call order: tryfirst ones first, then the last registered first, trylast last."""
    impls = getattr(pm.hook, name).get_hookimpls()
    return [
        Implementation(impl.plugin_name, bool(impl.tryfirst), bool(impl.trylast), bool(impl.hookwrapper or impl.wrapper))
        for impl in reversed(impls)
    ]


def advice(name: str, firstresult: bool, historic: bool, impls: list[Implementation]) -> str:
    """How implementations of ``name`` are ordered and what returning does, from the hook's
    options, the way the framework calls it, who implements it and its family."""
    parts: list[str] = []
    returns_nothing = inspect.signature(getattr(hookspecs, name)).return_annotation in ("None", None)
    order = "tryfirst ones first, then from the last registered to the first, trylast ones last"
    if name in hookspecs.CALLED_PER_IMPLEMENTATION:
        parts.append(f"Not a pluggy hook call: the framework calls each implementation itself ({order}), so "
                     "firstresult does not apply and a wrapper would be called as a plain function (write "
                     f"none); {hookspecs.CALLED_PER_IMPLEMENTATION[name]}.")
    elif firstresult:
        parts.append(f"firstresult: implementations run {order}; the first result other than None wins, so "
                     "return None to pass the call on.")
    elif returns_nothing:
        parts.append(f"Every implementation runs, {order}.")
    else:
        parts.append(f"Every implementation runs, {order}; the results other than None are collected in a "
                     "list in that order.")
    if historic:
        parts.append("historic: a plugin registered later is called with the earlier calls' arguments.")
    ordered = [impl for impl in impls if impl.trylast or impl.tryfirst]
    dispatched = firstresult and name not in hookspecs.CALLED_PER_IMPLEMENTATION
    for impl in ordered:
        if impl.plugin == "generic" and impl.trylast and dispatched:
            parts.append("The generic arch implements it trylast: the fallback an arch inherits for "
                         "whatever it does not answer.")
        else:
            where = "after every other implementation" if impl.trylast else "before the others"
            parts.append(f"{impl.plugin} implements it {'trylast' if impl.trylast else 'tryfirst'} (it runs {where}).")
    if not impls:
        parts.append("No installed plugin implements it.")
    parts.append(hookspecs.FAMILY_ADVICE[hookspecs.FAMILIES[name]])
    return " ".join(parts)


def describe_hooks(pm: pluggy.PluginManager) -> list[HookInfo]:
    """Every hook of hookspecs.py, in file order, as ``pm`` (with its plugins) sees it."""
    out = []
    for name in hook_names():
        opts = getattr(pm.hook, name).spec.opts
        firstresult, historic = bool(opts.get("firstresult")), bool(opts.get("historic"))
        impls = _implementations(pm, name)
        out.append(HookInfo(
            name=name,
            family=hookspecs.FAMILIES[name],
            signature=signature(name),
            firstresult=firstresult,
            historic=historic,
            doc=inspect.getdoc(getattr(hookspecs, name)) or "",
            advice=advice(name, firstresult, historic, impls),
            implementations=impls,
        ))
    return out
