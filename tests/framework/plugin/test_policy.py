"""Policy specs refuse what the model cannot follow."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from permalloc import PolicySpec, SpecError
from permalloc.plugin.policies import BUILTIN_POLICIES
from permalloc.plugin.policy import KERNELS
from permalloc.run.registry import override_policy


def test_every_builtin_policy_models_a_known_kernel():
    assert {p.kernel for p in BUILTIN_POLICIES} == set(KERNELS)


@pytest.mark.parametrize("kernel", ["99.99", "7.0", "6.6", ""])
def test_an_unknown_kernel_is_refused_with_the_known_ones(kernel):
    with pytest.raises(ValidationError, match=r"is not one the model follows \(known: 5.10, 6.1, 6.12, 7.3\)"):
        PolicySpec(name="p", kernel=kernel)


@pytest.mark.parametrize("key", ["name", "description"])
def test_fields_that_say_what_a_policy_is_cannot_be_set(key):
    with pytest.raises(SpecError, match=rf"--set {key}: the policy's {key} cannot be overridden"):
        override_policy(BUILTIN_POLICIES[0], [f"{key}=x"])


def test_set_changes_a_field_and_says_so():
    changed = override_policy(BUILTIN_POLICIES[0], ["live_cache=true", "kernel=6.12"])
    assert changed.live_cache and changed.kernel == "6.12" and changed.name == BUILTIN_POLICIES[0].name
    assert changed.description.endswith("[with live_cache=true,kernel=6.12]")
    with pytest.raises(SpecError, match=r"--set: kernel: kernel '7.0' is not one the model follows"):
        override_policy(BUILTIN_POLICIES[0], ["kernel=7.0"])


def test_packing_by_lifetime_without_huge_mappings_is_one_line_naming_the_field():
    rfc = next(p for p in BUILTIN_POLICIES if p.name == "rfc")  # huge_mappings off
    with pytest.raises(SpecError) as err:
        override_policy(rfc, ["huge_pack_by_lifetime=true"])
    assert str(err.value) == ("--set: huge_pack_by_lifetime: true needs huge_mappings=true (it splits the 2 MiB "
                              "packs of huge_mappings by lifetime)")
    assert override_policy(rfc, ["huge_mappings=true", "huge_pack_by_lifetime=true"]).huge_pack_by_lifetime


def test_a_variants_bad_value_names_the_variant_not_set():
    from permalloc.plugin.pluginmanager import registry_manager
    from permalloc.run.registry import resolve_policy

    with pytest.raises(SpecError, match=r"^policy variant 'rfc\[live_cache=maybe\]': live_cache: "):
        resolve_policy(registry_manager(), "rfc[live_cache=maybe]")
