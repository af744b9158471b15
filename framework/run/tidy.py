"""A sweep's results as one tidy table (a row per run × metric) and its summary over seeds.

Columns: ``run`` (the run's key), ``scenario``, ``policy``, ``arch``, ``workload``, one column
per swept field (machine axes, then policy axes), ``seed``, then ``op`` (``all`` for the run's
totals, else an op kind), ``stat`` (``total`` for a run's totals and an op kind's count;
``mean`` / ``median`` / ``p90`` / ``max`` of the per-op values), ``metric`` and ``value``.
Rows come in the grid's run order, metrics in the order of ``METRICS``, so the same runs give
the same bytes in Parquet and CSV whatever executor ran them.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from permalloc.atomicfile import atomic_write
from permalloc.model.metrics import METRICS
from permalloc.run.seedstats import CONFIDENCE
from permalloc.run.sweep import RunRecord

LABELS = ("scenario", "policy", "arch", "workload")
PER_OP_STATS = ("mean", "median", "p90", "max")
VALUE_COLUMNS = ("op", "stat", "metric", "value")


def columns(swept: Sequence[str]) -> list[str]:
    return ["run", *LABELS, *swept, "seed", *VALUE_COLUMNS]


def _rows(record: RunRecord, swept: Sequence[str]) -> list[tuple[Any, ...]]:
    head = (record.key, *(record.labels[c] for c in LABELS), *(record.labels[c] for c in swept), record.labels["seed"])
    rows = [(*head, "all", "total", metric, float(record.totals[metric])) for metric in METRICS]
    for kind in sorted(record.per_op):
        stats_of = record.per_op[kind]
        rows.append((*head, kind, "total", "count", float(stats_of["count"])))
        for metric in METRICS:
            if metric in stats_of:
                rows.extend((*head, kind, stat, metric, float(stats_of[metric][stat])) for stat in PER_OP_STATS)
    return rows


def frame(records: Sequence[RunRecord], swept: Sequence[str]) -> pd.DataFrame:
    """The tidy table of ``records`` (in their order)."""
    rows = [row for record in records for row in _rows(record, swept)]
    table = pd.DataFrame.from_records(rows, columns=columns(swept))
    for name in (*swept, "seed"):  # an axis of whole numbers stays whole (cpus, memory, seed)
        if pd.api.types.is_float_dtype(table[name]) and (table[name] % 1 == 0).all():
            table[name] = table[name].astype("int64")
    return table


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per cell (every column but run, seed and value): ``mean``, the ``CONFIDENCE`` Student-t
    interval ``low`` / ``high`` of the mean over the seeds (NaN for one seed; the mean itself
    when every seed agrees) and ``n`` seeds, as :func:`permalloc.run.seedstats.interval`."""
    keys = [c for c in table.columns if c not in ("run", "seed", "value")]
    grouped = table.groupby(keys, sort=False, dropna=False)["value"]
    out = grouped.agg(mean="mean", std="std", n="count").reset_index()
    t = stats.t.ppf(1 - (1 - CONFIDENCE) / 2, np.maximum(out["n"] - 1, 1))
    half = np.where(out["n"] > 1, t * out["std"].fillna(0) / np.sqrt(out["n"]), np.nan)
    out["low"] = out["mean"] - half
    out["high"] = out["mean"] + half
    return out.drop(columns="std")[[*keys, "mean", "low", "high", "n"]]


def write_tables(table: pd.DataFrame, out: str | Path, seeds: int) -> list[Path]:
    """``results.parquet`` and ``results.csv`` in ``out``, and ``summary.csv`` when more than
    one seed ran; each written whole or not at all."""
    out = Path(out)
    written = []
    with atomic_write(out / "results.parquet", "wb") as fh:
        table.to_parquet(fh, engine="pyarrow", index=False)
    written.append(out / "results.parquet")
    with atomic_write(out / "results.csv", "w", encoding="utf-8", newline="") as fh:
        table.to_csv(fh, index=False)
    written.append(out / "results.csv")
    if seeds > 1:
        with atomic_write(out / "summary.csv", "w", encoding="utf-8", newline="") as fh:
            summary(table).to_csv(fh, index=False)
        written.append(out / "summary.csv")
    return written
