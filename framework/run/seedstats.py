"""How much of a difference is the seed's: intervals over seeds and paired tests against a baseline.

``compare --seeds N`` runs every policy on seeds s, s+1, ..., s+N-1 (the machine's seed moves
KASLR, the workload's draws and every other seeded choice). For each policy and metric the
summary gives the mean over the seeds with a 95 % Student-t interval of that mean. With a
baseline, each other policy's metric is also given as the mean of its per-seed ratios to the
baseline (same seed: the runs are paired) with its t-interval, and a paired t-test over the
same seeds says whether the difference can be told apart from seed noise (p < 0.05). A
difference that is the same on every seed has no noise and is told apart; one seed gives no
estimate of the noise, so nothing is told apart.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any

from permalloc.errors import SpecError
from permalloc.model.metrics import METRICS
from permalloc.run.simulation import PolicyResult

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE


def interval(values: Sequence[float]) -> dict[str, float | None]:
    """Mean and its two-sided ``CONFIDENCE`` t-interval (None bounds for a single value)."""
    centre = statistics.fmean(values)
    if len(values) < 2:
        return {"centre": _tidy(centre), "low": None, "high": None}
    from scipy import stats  # ~1 s to import: only when there is more than one seed

    half = stats.t.ppf(1 - ALPHA / 2, len(values) - 1) * statistics.stdev(values) / math.sqrt(len(values))
    mid = _tidy(centre)  # each bound rounded on its own could land on the far side of the rounded centre
    return {"centre": mid, "low": min(_tidy(centre - half), mid), "high": max(_tidy(centre + half), mid)}


def paired(values: Sequence[float], base: Sequence[float]) -> dict[str, Any]:
    """Ratio to the baseline (mean of per-seed ratios, with its interval) and whether the paired
    difference can be told apart from seed noise."""
    diffs = [v - b for v, b in zip(values, base)]
    if all(d == 0 for d in diffs):
        p, distinct = 1.0, False
    elif len(diffs) < 2:
        p, distinct = None, False
    elif statistics.pstdev(diffs) == 0:
        p, distinct = 0.0, True  # the same difference on every seed
    else:
        from scipy import stats

        p = float(stats.ttest_rel(values, base).pvalue)
        distinct = p < ALPHA
    if all(b != 0 for b in base):
        ratio = interval([v / b for v, b in zip(values, base)])
    elif all(v == 0 and b == 0 for v, b in zip(values, base)):
        ratio = {"centre": 1, "low": None, "high": None}
    else:
        ratio = {"centre": None, "low": None, "high": None}  # a zero baseline on some seed: no ratio
    return {"ratio": ratio, "p": None if p is None else _tidy(p), "distinguishable": distinct}


def summarise(seeds: Sequence[int], per_seed: Sequence[Sequence[PolicyResult]], baseline: str | None = None
              ) -> dict[str, Any]:
    """The ``seeds`` section of a result: per-seed values, intervals and the baseline comparison."""
    names = [r.policy for r in per_seed[0]]
    if baseline is not None and baseline not in names:
        raise SpecError(f"--baseline {baseline!r} is not among the compared policies ({', '.join(names)})")
    values = {name: {metric: [float(run[i].totals[metric]) for run in per_seed] for metric in METRICS}
              for i, name in enumerate(names)}
    out: dict[str, Any] = {
        "seeds": list(seeds), "confidence": CONFIDENCE, "method": "Student-t interval of the mean over seeds; "
        "baseline: mean of per-seed ratios, paired t-test over the same seeds",
        "policies": {name: {metric: {"values": [_tidy(v) for v in vals], **interval(vals)}
                            for metric, vals in metrics.items()} for name, metrics in values.items()},
    }
    if baseline is not None:
        out["baseline"] = {"policy": baseline, "policies": {
            name: {metric: paired(vals, values[baseline][metric]) for metric, vals in metrics.items()}
            for name, metrics in values.items() if name != baseline}}
    return out


def _tidy(value: float) -> float | int:
    return int(value) if float(value).is_integer() else round(value, 6)
