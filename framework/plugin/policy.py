"""Policies: a named, frozen description of how a kernel design handles permissioned memory."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

# The kernels whose code paths the model follows where versions differ (the built-in policies:
# legacy and the RFC 5.10, linux-6.1, linux-6.12, rox-cache 7.3); another version would silently
# run as one of them.
KERNELS = ("5.10", "6.1", "6.12", "7.3")


class PolicySpec(BaseModel):
    """One design to compare. Built-ins replay the kernel's history (``permalloc policies``).

    Mechanism fields are read by the arch backend and the consumers; ``options`` holds
    settings of third-party plugins (namespaced, e.g. ``{"myplugin.batch": 8}``).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.+-]+(\[[^\[\]\n]+\])?$",
                      description="a name, or NAME[FIELD=VALUE,...] for a variant of a named policy")
    description: str = ""
    kernel: str = Field("6.1", description="kernel whose code paths are followed where versions differ")
    workload: str | None = Field(
        None,
        description="workload it runs on unless --workload says otherwise: a name that `permalloc workloads` "
        "lists, or a workload file; None: the workload of its kernel (else the newest older one, else the oldest)",
    )
    arch: str | None = Field(None, description="arch this policy is meant for (None: any)")
    module_layout: str = Field("contiguous", description="contiguous | rfc | module-memory (layout plugins)")
    text_loading: Literal["set_memory", "text_poke"] = Field(
        "set_memory", description="write text in place then set_memory_*, or stage and text_poke (RFC opt. 2)"
    )
    directmap: Literal["split-on-demand", "unmapped-block-cache"] = Field(
        "split-on-demand", description="CPA splits per page, or 2 MiB blocks unmapped in bulk (RFC opt. 1)"
    )
    live_cache: bool = Field(False, description="keep freed RX mappings live for reuse (RFC opt. 3)")
    huge_mappings: bool = Field(False, description="pack same-permission allocations into 2 MiB leaves (RFC opt. 4)")
    huge_pack_by_lifetime: bool = Field(
        False,
        description="with huge_mappings, on an arch that packs 2 MiB leaves (x86): one set of 2 MiB packs per (permission, lifetime) instead of per "
        "permission, so that short-lived allocations (module init sections, BPF JIT images) never share a leaf "
        "with long-lived ones (module core sections); the RFC cover letter's idea 4",
    )
    rox_cache: bool = Field(False, description="execmem ROX cache: executable memory carved from 2 MiB ROX pages (module text)")
    bpf_allocator: str = Field("per-program", description="per-program | pack | perm-alloc (BPF JIT plugin)")
    options: dict[str, str | int | float | bool] = Field(default_factory=dict)

    @field_validator("kernel")
    @classmethod
    def _known_kernel(cls, value: str) -> str:
        if value not in KERNELS:
            raise ValueError(f"kernel {value!r} is not one the model follows (known: {', '.join(KERNELS)})")
        return value

    @field_validator("huge_pack_by_lifetime")
    @classmethod
    def _packs_need_huge_mappings(cls, value: bool, info: ValidationInfo) -> bool:
        if value and not info.data.get("huge_mappings", False):
            raise ValueError("true needs huge_mappings=true (it splits the 2 MiB packs of huge_mappings by lifetime)")
        return value


DEFAULT_POLICY = PolicySpec(name="default", description="pre-RFC mechanisms with no optimisation")
