"""Named policies and scenarios contributed by plugins, and their lookup by name or file."""

from __future__ import annotations

import re
from pathlib import Path

import pluggy
from pydantic import ValidationError

from permalloc.errors import SpecError
from permalloc.plugin.pluginmanager import collect
from permalloc.plugin.policy import DEFAULT_POLICY, PolicySpec
from permalloc.run.modelfile import format_validation_error, load_model_file
from permalloc.run.scenario import Phase, Scenario, ScenarioSource, load_scenario_file, op_types


def policies(pm: pluggy.PluginManager) -> dict[str, PolicySpec]:
    """Every registered policy by name (``default`` always exists)."""
    found: dict[str, PolicySpec] = {DEFAULT_POLICY.name: DEFAULT_POLICY}
    for _plugin, policy in collect(pm, "permalloc_register_policies", PolicySpec):
        found[policy.name] = policy
    return found


def policies_for(pm: pluggy.PluginManager, arch: str) -> list[PolicySpec]:
    """The registered policies a machine of ``arch`` runs when none are named (``permalloc
    compare --arch ARCH``): those meant for ``arch`` and those for any arch; ``default`` (no
    design chosen) is left out."""
    return [p for name, p in policies(pm).items() if name != DEFAULT_POLICY.name and p.arch in (None, arch)]


# docs/architecture.md, "Scenarios and ops": the default scenario is boot + bpf-churn + tracing, run one
# after the other (on an arch, the parts whose ops its plugins provide: default_for).
DEFAULT_SCENARIO = ("boot", "bpf-churn", "tracing")


def scenarios(pm: pluggy.PluginManager) -> dict[str, ScenarioSource]:
    """Every registered scenario by name, plus ``default`` when its parts are installed."""
    found: dict[str, ScenarioSource] = {}
    for _plugin, source in collect(pm, "permalloc_register_scenarios", ScenarioSource):
        found[source.name] = source
    if "default" not in found and all(part in found for part in DEFAULT_SCENARIO):
        parts = [found[part] for part in DEFAULT_SCENARIO]
        found["default"] = ScenarioSource("default", " + ".join(DEFAULT_SCENARIO), lambda: _concat("default", parts))
    return found


def default_for(pm: pluggy.PluginManager, machine_pm: pluggy.PluginManager) -> tuple[Scenario, list[str]]:
    """The default scenario on the machine whose plugin manager is ``machine_pm``: the parts of
    DEFAULT_SCENARIO whose every op some plugin of that machine provides, and a note for
    each part left out (e.g. tracing on an arch where the ftrace and jump label patchers do
    not apply)."""
    found = scenarios(pm)
    known = set(op_types(machine_pm))
    parts, notes = [], []
    for name in DEFAULT_SCENARIO:
        if name not in found:
            continue
        missing = sorted({op.get("op") for op in found[name].build().ops} - known)
        if missing:
            notes.append(f"the default scenario leaves out {name}: no plugin of this arch provides its ops "
                         f"{', '.join(missing)}")
        else:
            parts.append(found[name])
    if not parts:
        raise SpecError("the default scenario has no part this arch's plugins can run")
    return _concat("default", parts), notes


def _concat(name: str, parts: list[ScenarioSource]) -> Scenario:
    """The parts one after the other, each a phase named after it."""
    built = [part.build() for part in parts]
    starts = [sum(len(scenario.ops) for scenario in built[:i]) for i in range(len(built))]
    return Scenario(
        name=name,
        description="; ".join(f"{part.name}: {part.description}" for part in parts),
        ops=[op for scenario in built for op in scenario.ops],
        phases=[Phase(name=part.name, start=start) for part, start, scenario in zip(parts, starts, built) if scenario.ops],
    )


def _is_file(text: str) -> bool:
    return text.endswith((".json", ".toml")) or "/" in text or Path(text).is_file()


def load_policy_file(path: str | Path) -> PolicySpec:
    return load_model_file(path, PolicySpec)


_VARIANT = re.compile(r"^(?P<base>[^\[\]]+)\[(?P<sets>[^\[\]]*)\]$")


def resolve_policy(pm: pluggy.PluginManager, name_or_file: str) -> PolicySpec:
    """A policy by name or file, or a variant ``NAME[FIELD=VALUE,...]``: that policy with
    the fields set (as ``--set`` would), named as written so that it is a column of its own."""
    if _is_file(name_or_file):
        return load_policy_file(name_or_file)
    variant = _VARIANT.match(name_or_file)
    if variant:
        sets = [item.strip() for item in variant["sets"].split(",") if item.strip()]
        if not sets:
            raise SpecError(f"policy variant {name_or_file!r}: no FIELD=VALUE between the brackets")
        base = resolve_policy(pm, variant["base"])
        changed = override_policy(base, sets, f"policy variant {name_or_file!r}")
        return changed.model_copy(update={"name": f"{base.name}[{','.join(sets)}]"})
    known = policies(pm)
    if name_or_file not in known:
        raise SpecError(f"unknown policy {name_or_file!r}; known policies: {', '.join(sorted(known))}")
    return known[name_or_file]


def resolve_scenario(pm: pluggy.PluginManager, name_or_file: str) -> Scenario:
    if _is_file(name_or_file):
        return load_scenario_file(name_or_file)
    known = scenarios(pm)
    if name_or_file not in known:
        names = ", ".join(sorted(known)) or "none registered"
        raise SpecError(f"unknown scenario {name_or_file!r}; known scenarios: {names} (or give a .json/.toml file)")
    return known[name_or_file].build()


FIXED_FIELDS = ("name", "description")  # they say what the policy is; --set changes are appended to the description


def override_policy(policy: PolicySpec, assignments: list[str], where: str = "--set") -> PolicySpec:
    """Apply ``KEY=VALUE`` overrides (``--set live_cache=true``), validated like a file; an
    error starts with ``where`` (the option, variant or file section they came from)."""
    if not assignments:
        return policy
    data = policy.model_dump()
    for item in assignments:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise SpecError(f"{where} {item!r}: expected KEY=VALUE")
        if key in FIXED_FIELDS:
            raise SpecError(f"{where} {key}: the policy's {key} cannot be overridden (copy the policy into a file "
                            "to make a new one)")
        if key not in PolicySpec.model_fields:
            raise SpecError(f"{where} {key}: unknown policy field; fields: "
                            f"{', '.join(k for k in PolicySpec.model_fields if k not in FIXED_FIELDS)}")
        data[key] = value
    suffix = ",".join(assignments)
    data["name"] = policy.name
    data["description"] = f"{policy.description} [with {suffix}]".strip()
    try:
        return PolicySpec.model_validate(data)
    except ValidationError as exc:
        raise SpecError(f"{where}: {format_validation_error(exc)}") from None
