"""Plugin discovery and the per-machine plugin manager.

Two ways in, one registry:

* **Built-in arches** are the subpackages of :mod:`permalloc.arches` (the ``arches/``
  folder), found with :func:`pkgutil.iter_modules` over the package's ``__path__``
  (:func:`builtin_arches`); each registers under its subpackage name (``arches/x86`` is the
  plugin ``x86``). Nothing lists them: an arch added to the folder is found as it is, and one
  taken away is simply absent. A subpackage whose name starts with ``_`` is not an arch.
* **Every other plugin**, built-in or third-party (a third-party arch too), is found through
  the ``permalloc`` entry-point group (like ``pytest11``). The built-in consumers are also
  listed in :data:`BUILTIN_PLUGINS` so that a checkout used without installed metadata still
  finds them.

A name is registered once: a built-in arch's name is taken first, so an entry point of the
same name is left out and named (as is an entry point whose name another one took); an
entry point that loads a module already found (stale metadata naming a built-in arch) is
skipped. The records are in name order, which is the registration order of every manager.
"""

from __future__ import annotations

import functools
import importlib
import importlib.metadata
import pkgutil
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import pluggy

from permalloc.errors import PermallocError, PluginError, PluginWarning, SpecError
from permalloc.model.archinfo import ArchInfo
from permalloc.plugin import hookspecs
from permalloc.strictjson import problem as json_problem

ENTRY_POINT_GROUP = "permalloc"

#: the package whose subpackages are the built-in arches (:func:`builtin_arches`)
ARCH_PACKAGE = "permalloc.arches"

#: the built-in plugins that are not arches, for a checkout without installed metadata (the
#: installed package's entry points name the same modules)
BUILTIN_PLUGINS: tuple[tuple[str, str], ...] = (
    ("contract_ops", "permalloc.run.contract_ops"),
    ("system_ops", "permalloc.run.system_ops"),
    ("policies", "permalloc.plugin.policies"),
    ("bpf_jit", "permalloc.plugins.bpf_jit"),
    ("invariants", "permalloc.plugins.invariants"),
    ("contract", "permalloc.plugins.invariants.contract"),
    ("module_loader", "permalloc.plugins.module_loader"),
    ("alternatives", "permalloc.plugins.alternatives"),
    ("smp_locks", "permalloc.plugins.smp_locks"),
    ("orc", "permalloc.plugins.orc"),
    ("jump_label", "permalloc.plugins.jump_label"),
    ("ftrace", "permalloc.plugins.ftrace"),
    ("static_call", "permalloc.plugins.static_call"),
    ("btf", "permalloc.plugins.btf"),
)


@dataclass(frozen=True)
class PluginRecord:
    """A discovered plugin: its registration name, object and where it came from."""

    name: str
    plugin: Any
    origin: str  # "builtin" or "entry point"
    dist: str = ""
    version: str = ""
    error: str = ""  # why it is left out (failed to load, a name already taken); "" when it works


def builtin_arches() -> list[tuple[str, str]]:
    """``(registration name, module name)`` of every built-in arch: each subpackage of
    :data:`ARCH_PACKAGE` on its ``__path__`` (not one whose name starts with ``_``), by name."""
    package = importlib.import_module(ARCH_PACKAGE)
    found = {info.name for info in pkgutil.iter_modules(package.__path__) if info.ispkg and not info.name.startswith("_")}
    return [(name, f"{ARCH_PACKAGE}.{name}") for name in sorted(found)]


def _own_distribution() -> tuple[str, str]:
    """The distribution that ships the built-in arches and its version ("" when permalloc
    runs from a checkout without installed metadata)."""
    try:
        dist = importlib.metadata.distribution("permalloc")
    except importlib.metadata.PackageNotFoundError:
        return "", ""
    return dist.metadata["Name"] or "permalloc", dist.version


@functools.cache
def discover() -> tuple[PluginRecord, ...]:
    """Load every plugin once per process: the built-in arches of the arches folder, the
    entry points, then the built-ins that no entry point named; in name order."""
    records: list[PluginRecord] = []
    seen: set[int] = set()
    names: dict[str, str] = {}  # registration name -> the distribution that has it
    dist, version = _own_distribution()
    for name, modname in builtin_arches():
        try:
            module = importlib.import_module(modname)
        except Exception as exc:  # noqa: BLE001 - a broken arch is named and left out, never a crash
            error = " ".join(f"failed to load {modname}: {type(exc).__name__}: {exc}".split())
            records.append(PluginRecord(name, None, "builtin", dist, version, error=error))
            names[name] = dist
            continue
        seen.add(id(module))
        names[name] = dist
        records.append(PluginRecord(name, module, "builtin", dist, version))
    for ep in sorted(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda e: e.name):
        dist = ep.dist.name if ep.dist else ""
        version = ep.dist.version if ep.dist else ""
        try:
            plugin = ep.load()
        except Exception as exc:  # noqa: BLE001 - a broken package is named and left out, never a crash
            error = " ".join(f"failed to load {ep.value}: {type(exc).__name__}: {exc}".split())
            records.append(PluginRecord(ep.name, None, "entry point", dist, version, error=error))
            continue
        if id(plugin) in seen:
            continue
        seen.add(id(plugin))
        if ep.name in names:
            records.append(PluginRecord(ep.name, None, "entry point", dist, version,
                                        error=f"the name {ep.name!r} is already taken by {names[ep.name] or 'a plugin'}"))
            continue
        names[ep.name] = dist
        records.append(PluginRecord(ep.name, plugin, "entry point", dist, version))
    for name, modname in BUILTIN_PLUGINS:
        module = importlib.import_module(modname)
        if id(module) not in seen and name not in names:
            seen.add(id(module))
            names[name] = ""
            records.append(PluginRecord(name, module, "builtin"))
    return tuple(sorted(records, key=lambda record: record.name))  # stable: a name's first record first


def broken_plugins() -> list[PluginRecord]:
    """The plugins left out, each with why (``permalloc plugins`` lists them, every command warns)."""
    return [record for record in discover() if record.error]


def _new_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    return pm


def _register(pm: pluggy.PluginManager, plugin: Any, name: str) -> None:
    try:
        pm.register(plugin, name=name)
    except ValueError as exc:
        raise PluginError(f"plugin {name!r}: {exc}") from exc
    except pluggy.PluginValidationError as exc:
        raise PluginError(f"plugin {name!r}: {exc}") from exc


def registry_manager(extra: Iterable[Any] = ()) -> pluggy.PluginManager:
    """A manager with every plugin registered: for registries, listings and the CLI."""
    pm = _new_manager()
    for record in discover():
        if not record.error:
            _register(pm, record.plugin, record.name)
    for plugin in extra:
        _register(pm, plugin, _plugin_name(plugin))
    _check(pm)
    return pm


def arch_plugins(pm: pluggy.PluginManager, spec: Any, policy: Any = None) -> dict[str, tuple[Any, ArchInfo]]:
    """Every registered arch plugin by arch name, with its description for ``spec`` under
    ``policy`` (None: the default policy)."""
    return _describe(pm, spec, policy)[0]


def _describe(pm: pluggy.PluginManager, spec: Any, policy: Any) -> tuple[dict[str, tuple[Any, ArchInfo]], list[str]]:
    """The arch plugins that serve ``spec`` and the names of those that answered None."""
    if policy is None:
        from permalloc.plugin.policy import DEFAULT_POLICY as policy
    arches: dict[str, tuple[Any, ArchInfo]] = {}
    declined: list[str] = []
    for impl in pm.hook.permalloc_arch_describe.get_hookimpls():
        info = _call_impl(impl, "permalloc_arch_describe", {"spec": spec, "policy": policy})
        if info is None:  # it does not serve this spec or policy
            declined.append(impl.plugin_name)
            continue
        if not isinstance(info, ArchInfo):
            raise PluginError(
                f"plugin {impl.plugin_name!r}: permalloc_arch_describe returned "
                f"{type(info).__name__}, expected ArchInfo"
            )
        arches[info.name] = (impl.plugin, info)
    return arches, declined


def machine_manager(spec: Any, policy: Any, extra: Iterable[Any] = ()) -> tuple[pluggy.PluginManager, ArchInfo]:
    """The plugin manager of one machine: the selected arch, ``generic``, and the plugins
    that apply to that arch (``permalloc_applies``).

    Raises :class:`PluginError` for an unknown arch (listing the known ones).
    """
    pm = registry_manager(extra)
    arches, declined = _describe(pm, spec, policy)
    if spec.arch not in arches:
        note = f" (plugins that do not serve this spec and policy: {', '.join(sorted(declined))})" if declined else ""
        raise PluginError(f"unknown arch {spec.arch!r}; known arches: {', '.join(sorted(arches))}{note}")
    for name, (plugin, _info) in arches.items():
        if name not in (spec.arch, "generic"):
            pm.unregister(plugin)
    for name in declined:  # an arch plugin that does not serve this spec takes no part in the machine
        pm.unregister(name=name)
    arch = arches[spec.arch][1]
    unknown = set(spec.cpu_features) - arch.cpu_features
    if unknown:
        known = ", ".join(sorted(arch.cpu_features)) or "none"
        raise SpecError(f"cpu_features: arch {arch.name} does not act on {', '.join(sorted(unknown))} "
                        f"(it knows: {known})")
    for impl in pm.hook.permalloc_applies.get_hookimpls():
        applies = _call_impl(impl, "permalloc_applies", {"arch": arch, "policy": policy})
        if not isinstance(applies, bool):
            raise PluginError(f"plugin {impl.plugin_name!r}: permalloc_applies returned {type(applies).__name__}, "
                              "expected bool")
        if not applies:
            pm.unregister(impl.plugin)
    _guard(pm)
    return pm, arch


def _call_impl(impl: Any, hook: str, kwargs: dict[str, Any]) -> Any:
    """One implementation, called with the arguments it names (the hooks that the framework
    calls per implementation); an exception names the plugin, as guarded hooks do."""
    try:
        return impl.function(*[kwargs[arg] for arg in impl.argnames])
    except PermallocError:
        raise
    except Exception as exc:
        raise PluginError(f"plugin {impl.plugin_name!r} raised in {hook}: {type(exc).__name__}: {exc}") from exc


def collect(pm: pluggy.PluginManager, hookname: str, expected: type, **kwargs: Any) -> list[tuple[str, Any]]:
    """The items of a registry hook (each implementation returns a list of ``expected``), with
    the plugin that gave each. An implementation that raises or returns anything else is named
    in a :class:`~permalloc.errors.PluginWarning` and left out; the others are kept."""
    items: list[tuple[str, Any]] = []
    for impl in reversed(getattr(pm.hook, hookname).get_hookimpls()):  # pluggy's call order
        if impl.hookwrapper or impl.wrapper:  # nothing to wrap: each implementation is called on its own
            continue
        try:
            batch = impl.function(*[kwargs[arg] for arg in impl.argnames])
        except Exception as exc:  # noqa: BLE001 - a broken registration is named and left out
            problem = f"raised {type(exc).__name__}: {' '.join(str(exc).split())}"
        else:
            if batch is None:
                continue
            wrong = ([batch] if not isinstance(batch, (list, tuple))
                     else [item for item in batch if not isinstance(item, expected)])
            if not wrong:
                items.extend((impl.plugin_name, item) for item in batch)
                continue
            problem = f"returned {type(wrong[0]).__name__}, expected a list of {expected.__name__}"
        warnings.warn(f"plugin {impl.plugin_name!r}: {hookname} {problem}; what it registers is left out",
                      PluginWarning, stacklevel=2)
    return items


def _plugin_name(plugin: Any) -> str:
    if isinstance(plugin, ModuleType):
        return plugin.__name__
    return getattr(plugin, "name", None) or f"{type(plugin).__name__}-{id(plugin):x}"


def _check(pm: pluggy.PluginManager) -> None:
    """check_pending: a hookimpl without a matching spec is a misspelled hook name."""
    try:
        pm.check_pending()
    except pluggy.PluginValidationError as exc:
        name = pm.get_name(exc.plugin) if exc.plugin is not None else "?"
        raise PluginError(f"plugin {name!r}: {exc}") from exc


_TYPES: dict[str, type | tuple[type, ...]] = {
    "tuple": tuple,
    "int": int,
    "bool": bool,
    "list": (list, tuple),
    "dict": dict,
}


def _expected_type(name: str) -> type | tuple[type, ...]:
    if name in _TYPES:
        return _TYPES[name]
    if name == "ArchInfo":
        return ArchInfo
    if name == "ArchMechanisms":
        from permalloc.mechanisms.archmechanisms import ArchMechanisms

        return ArchMechanisms
    if name == "BootMemory":
        from permalloc.model.memblock import BootMemory

        return BootMemory
    if name == "KernelImage":
        from permalloc.model.kernelimage import KernelImage

        return KernelImage
    from permalloc.plugin.contract import PermAllocation  # contract imports the machine; resolve lazily

    return PermAllocation


def _guard(pm: pluggy.PluginManager) -> None:
    """Wrap each hookimpl so that a raise or a wrong return type names the plugin and hook."""
    answered: dict[str, str] = {}
    pm._permalloc_answered = answered  # type: ignore[attr-defined]
    for hookname, typename in hookspecs.RETURN_TYPES.items():
        expected = _expected_type(typename)
        for impl in getattr(pm.hook, hookname).get_hookimpls():
            if not (impl.hookwrapper or impl.wrapper) and not getattr(impl.function, "_permalloc_guarded", False):
                impl.function = _guarded(impl.function, impl.plugin_name, hookname, expected,
                                         answered if hookname in ANSWER_NAMED else None, ANSWER_CHECKS.get(hookname))
    for caller_name in ("permalloc_module_going", "permalloc_event", "permalloc_machine_start", "permalloc_machine_boot",
                        "permalloc_machine_release", "permalloc_add_commands", "permalloc_run_report"):
        for impl in getattr(pm.hook, caller_name).get_hookimpls():
            if not (impl.hookwrapper or impl.wrapper) and not getattr(impl.function, "_permalloc_guarded", False):
                impl.function = _guarded(impl.function, impl.plugin_name, caller_name, None)


def _int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _direct_map_problem(answer: tuple) -> str | None:
    if len(answer) != 2 or not isinstance(answer[0], (list, tuple)) or not isinstance(answer[1], dict):
        return "a tuple that is not (leaves, counts)"
    for leaf in answer[0]:
        if not (isinstance(leaf, (list, tuple)) and len(leaf) == 3 and all(_int(v) for v in leaf)):
            return f"the leaf {leaf!r}, expected (start_pfn, end_pfn, leaf_pages) of ints"
    if not all(_int(k) and _int(v) for k, v in answer[1].items()):
        return "counts that are not {leaf_pages: count} of ints"
    return None


def _jit_image_problem(answer: tuple) -> str | None:
    if len(answer) != 3 or not all(_int(v) and v > 0 for v in answer):
        return f"{answer!r}, expected (jited_len, binary_align, pack_align) of positive ints"
    return None


def _layouts_problem(answer: list) -> str | None:
    for layout in answer:
        if not isinstance(getattr(layout, "name", None), str) or not callable(getattr(layout, "plan", None)):
            return f"{type(layout).__name__}, expected layouts with a name (str) and a plan"
    return None


def _lines_problem(answer: list) -> str | None:
    wrong = [line for line in answer if not isinstance(line, str)]
    return f"a list holding {type(wrong[0]).__name__}, expected a list of str" if wrong else None


def _checks_problem(answer: dict) -> str | None:
    for key, pair in answer.items():
        if not (isinstance(key, str) and isinstance(pair, (list, tuple)) and len(pair) == 2
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in pair)):
            return f"{{{key!r}: {pair!r}}}, expected {{column: [measured, simulated]}} of numbers"
    return None


def _count_problem(answer: int) -> str | None:
    if isinstance(answer, bool):
        return "bool, expected int"
    return f"{answer}, expected a count >= 0" if answer < 0 else None


def _address_problem(answer: int) -> str | None:
    return "bool, expected int" if isinstance(answer, bool) else None


# What the type alone does not say: the elements and values of an answer, checked after the
# type (None: fine, else what was wrong, after "returned").
ANSWER_CHECKS = {
    "permalloc_arch_direct_map": _direct_map_problem,
    "permalloc_bpf_jit_image": _jit_image_problem,
    "permalloc_module_layouts": _layouts_problem,
    "permalloc_machine_teardown": _lines_problem,
    "permalloc_measurement_check": _checks_problem,
    "permalloc_writable": _address_problem,
    "permalloc_shrink": _count_problem,
    "permalloc_runtime_patch": _count_problem,
}


# Hooks whose answers go into results as they are: a NaN, an infinity or anything JSON has no
# type for (a set, an object) is refused by name.
WRITTEN_OUT = ("permalloc_result_extra", "permalloc_measurement_check")


# Hooks whose answer is checked after the call (PermAlloc._check_placement, the contract
# observer of plugins/invariants): which plugin gave it is recorded, for the error to name it;
# other hooks pay nothing for this. None of them is hot (one call per contract step).
ANSWER_NAMED = ("permalloc_alloc", "permalloc_finish", "permalloc_change", "permalloc_free")


def answered_by(pm: pluggy.PluginManager, hook: str) -> str:
    """The plugin whose implementation of ``hook`` last gave an answer on this machine."""
    return getattr(pm, "_permalloc_answered", {}).get(hook, "?")


def _guarded(func: Any, plugin: str, hook: str, expected: type | tuple[type, ...] | None,
             answered: dict[str, str] | None = None, check: Callable[[Any], str | None] | None = None) -> Any:
    @functools.wraps(func)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            result = func(*args, **kwargs)
        except PermallocError:
            raise  # deliberate, already one line (out of memory, contract, strict invariant)
        except Exception as exc:
            raise PluginError(f"plugin {plugin!r} raised in {hook}: {type(exc).__name__}: {exc}") from exc
        if expected is not None and result is not None and not isinstance(result, expected):
            raise PluginError(
                f"plugin {plugin!r}: {hook} returned {type(result).__name__}, expected "
                f"{hookspecs.RETURN_TYPES[hook]}"
            )
        if check is not None and result is not None and (bad := check(result)):
            raise PluginError(f"plugin {plugin!r}: {hook} returned {bad}")
        if hook in WRITTEN_OUT and (bad := json_problem(result)):
            raise PluginError(f"plugin {plugin!r}: {hook} returned what strict JSON cannot hold: {bad}")
        if answered is not None and result is not None:
            answered[hook] = plugin
        return result

    call._permalloc_guarded = True  # type: ignore[attr-defined]
    return call
