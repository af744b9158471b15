"""Built-in scenarios: ``bpf-churn`` and ``containers``. Builders take no arguments.

**bpf-churn** (``CHURN_*``): 4000 eBPF program loads, each unloaded after its lifetime.
JIT image sizes are drawn from a log-normal distribution with median 500 B and 75th
percentile 2048 B (sigma = ln(2048/500) / z(0.75) = 2.09), so that about half of the
programs are under 500 bytes of JIT image and three quarters under 2 KiB, the figures
issue 6 quotes for a large production fleet (their original source was not available
here). Each size is turned into an instruction count with the inverse of the eBPF size
model (:func:`.sizes.ebpf_insns_for_bytes`, 6.1 prologue), capped at 1,000,000
instructions. Loads arrive as a Poisson process, one every 100 ms on average; 70% of the
programs live an exponential time of mean 30 s (per-connection, per-container and tracing
programs), 30% of mean 600 s (daemons' programs). Seeded with ``random.Random(CHURN_SEED)``.
The lifetimes are assumptions.

**containers** (``CONTAINER_*``): 200 container starts, one every 500 ms, each living an
exponential time of mean 60 s (seeded; assumption). A start installs three seccomp filters
and the exit drops them:

* the runtime's profile: Docker's default seccomp profile (moby ``profiles/seccomp/
  default.json``) compiled with libseccomp 2.5.4 (Debian 12) for x86_64 with the x86 and x32
  sub-architectures, as Docker's ``archMap`` asks: 952 cBPF instructions (measured here:
  docs/bpf-jit.md). runc loads it with one ``seccomp(SECCOMP_SET_MODE_FILTER)``;
* two filters of 120 and 40 instructions that processes in the container install for
  themselves (a sandboxing service, a hardened daemon): an ASSUMPTION, not sourced.

Every filter is a new ``bpf_prog``: seccomp never shares JIT images between identical
filters (kernel/seccomp.c: seccomp_prepare_filter -> bpf_prog_create_from_user).
"""

from __future__ import annotations

import math
import random
from statistics import NormalDist
from typing import Any

from permalloc.run.scenario import Scenario, ScenarioSource

from .sizes import ebpf_insns_for_bytes

CHURN_LOADS = 4000
CHURN_SEED = 6
CHURN_MEDIAN_BYTES = 500
CHURN_P75_BYTES = 2048
CHURN_SIGMA = math.log(CHURN_P75_BYTES / CHURN_MEDIAN_BYTES) / NormalDist().inv_cdf(0.75)
CHURN_INTERARRIVAL_MS = 100.0
CHURN_SHORT_SHARE = 0.7
CHURN_SHORT_MEAN_MS = 30_000.0
CHURN_LONG_MEAN_MS = 600_000.0

CONTAINER_STARTS = 200
CONTAINER_SEED = 7
CONTAINER_INTERVAL_MS = 500.0
CONTAINER_MEAN_LIFETIME_MS = 60_000.0
DOCKER_DEFAULT_PROFILE_INSNS = 952  # measured: libseccomp 2.5.4, x86_64 + x86 + x32
CONTAINER_FILTERS: tuple[int, ...] = (DOCKER_DEFAULT_PROFILE_INSNS, 120, 40)


def churn_image_sizes(n: int, seed: int = CHURN_SEED) -> list[float]:
    """``n`` JIT image sizes in bytes: log-normal, median 500 B, p75 2048 B."""
    rng = random.Random(seed)
    mu = math.log(CHURN_MEDIAN_BYTES)
    return [rng.lognormvariate(mu, CHURN_SIGMA) for _ in range(n)]


def _timeline(events: list[tuple[float, int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Ops in time order, with ``advance`` between distinct times."""
    ops: list[dict[str, Any]] = []
    now = 0.0
    for t, _, op in sorted(events, key=lambda e: (e[0], e[1])):
        if t > now:
            ops.append({"op": "advance", "ms": round(t - now, 3)})
            now = t
        ops.append(op)
    return ops


def build_churn() -> Scenario:
    rng = random.Random(CHURN_SEED + 1)
    sizes = churn_image_sizes(CHURN_LOADS)
    events: list[tuple[float, int, dict[str, Any]]] = []
    t = 0.0
    seq = 0
    for i, size in enumerate(sizes):
        t += rng.expovariate(1 / CHURN_INTERARRIVAL_MS)
        mean = CHURN_SHORT_MEAN_MS if rng.random() < CHURN_SHORT_SHARE else CHURN_LONG_MEAN_MS
        end = t + rng.expovariate(1 / mean)
        pid = f"p{i}"
        events.append((t, seq, {"op": "load_bpf", "id": pid, "insns": ebpf_insns_for_bytes(size), "kind": "ebpf"}))
        events.append((end, seq + 1, {"op": "unload_bpf", "id": pid}))
        seq += 2
    return Scenario(name="bpf-churn", description=CHURN_DESCRIPTION, ops=_timeline(events))


def build_containers() -> Scenario:
    rng = random.Random(CONTAINER_SEED)
    events: list[tuple[float, int, dict[str, Any]]] = []
    seq = 0
    for c in range(CONTAINER_STARTS):
        start = c * CONTAINER_INTERVAL_MS
        end = start + rng.expovariate(1 / CONTAINER_MEAN_LIFETIME_MS)
        for f, insns in enumerate(CONTAINER_FILTERS):
            pid = f"c{c}-f{f}"
            events.append((start, seq, {"op": "load_bpf", "id": pid, "insns": insns, "kind": "seccomp"}))
            events.append((end, seq + 1, {"op": "unload_bpf", "id": pid}))
            seq += 2
    return Scenario(name="containers", description=CONTAINERS_DESCRIPTION, ops=_timeline(events))


CHURN_DESCRIPTION = (
    f"{CHURN_LOADS} eBPF loads (Poisson, mean gap {CHURN_INTERARRIVAL_MS:g} ms), each unloaded after a "
    f"lifetime (70% exp. mean {CHURN_SHORT_MEAN_MS / 1000:g} s, 30% mean {CHURN_LONG_MEAN_MS / 1000:g} s); "
    f"JIT image sizes log-normal, median {CHURN_MEDIAN_BYTES} B, p75 {CHURN_P75_BYTES} B; seed {CHURN_SEED}"
)
CONTAINERS_DESCRIPTION = (
    f"{CONTAINER_STARTS} container starts every {CONTAINER_INTERVAL_MS:g} ms, each installing seccomp filters "
    f"of {', '.join(map(str, CONTAINER_FILTERS))} cBPF insns (Docker default profile via libseccomp, plus two "
    f"assumed app filters) and dropping them at exit (lifetime exp. mean {CONTAINER_MEAN_LIFETIME_MS / 1000:g} s)"
)

SCENARIOS = (
    ScenarioSource("bpf-churn", CHURN_DESCRIPTION, build_churn),
    ScenarioSource("containers", CONTAINERS_DESCRIPTION, build_containers),
)
