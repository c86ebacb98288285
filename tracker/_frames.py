"""Shaping the store's rows (runs, tags, params, metrics as long frames) into what readers use.

Pure pandas: :mod:`tracker.queries` fetches the rows (SQL or the MLflow server), this module turns
them into the trials frame (one row per trial, ``p.<name>`` columns for hyperparameters), the
per-trial curves ``diagnose()`` takes, and the learning-curve points without summary metrics.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import pandas as pd

from tracker import schema
from tracker.liveness import live_state
from tracker.params import parse_param

TrialState = Literal["finished", "failed", "stopped", "running"]
TRIAL_STATES: tuple[TrialState, ...] = ("finished", "failed", "stopped", "running")
PARAM_PREFIX = "p."  # trials frame column for hyperparameter <name> is "p.<name>"
_SUMMARY_METRIC = (schema.BEST_PREFIX, schema.FINAL_PREFIX, schema.EPOCHS_RUN)


def history_dict(histories: pd.DataFrame, run_id: str) -> dict[str, list[float | None]]:
    """One run's long history rows as ``{key: [value at epoch 1, 2, ...]}`` for ``diagnose()``."""
    rows = histories[histories["run_id"] == run_id]
    curves: dict[str, list[float | None]] = {}
    if rows.empty:
        return curves
    last = int(rows["step"].max())
    for key, group in rows.groupby("key", sort=True):
        values: list[float | None] = [None] * last
        for step, value in zip(group["step"], group["value"], strict=True):
            if 1 <= step <= last:
                values[int(step) - 1] = None if pd.isna(value) else float(value)
        curves[str(key)] = values
    return curves


def trial_state(status: str, early_stopped: bool) -> TrialState:
    """Our four-way outcome from MLflow's run status and the early-stop tag."""
    if status == "FAILED":
        return "failed"
    if early_stopped or status == "KILLED":
        return "stopped"
    if status == "FINISHED":
        return "finished"
    return "running"


def sweep_state(tag: str | None, status: str, tags: Mapping[str, Any] | None = None) -> str:
    """The sweep's state tag, or one derived from the parent run's status when the tag is missing;
    ``crashed`` for a running sweep whose driver is gone (its heartbeat ``tags``, ``tracker.liveness``)."""
    if isinstance(tag, str) and tag:
        state = tag
    else:
        state = {"RUNNING": "running", "FINISHED": "finished", "FAILED": "failed"}.get(status, "interrupted")
    beat = {k: v for k, v in (tags or {}).items() if isinstance(v, str)}
    return live_state(state, beat)


def trials_frame(
    children: pd.DataFrame,
    tags: pd.DataFrame,
    params: pd.DataFrame,
    latest: pd.DataFrame,
    histories: pd.DataFrame,
    metric: str | None,
    goal: str | None,
) -> pd.DataFrame:
    ids = children["run_id"].tolist()
    out = pd.DataFrame({"run_id": ids})
    number = pd.to_numeric(column(tags, schema.TRIAL_NUMBER), errors="coerce").to_numpy()
    out["trial_number"] = number
    out["name"] = children["name"].to_numpy()
    out["status"] = children["status"].to_numpy()
    early = (column(tags, schema.EARLY_STOPPED) == "true").to_numpy()
    out["state"] = [trial_state(s, e) for s, e in zip(out["status"], early, strict=True)]
    out["early_stopped"] = early
    out["stopped_by"] = column(tags, schema.STOPPED_BY).to_numpy()
    out["error"] = column(tags, schema.ERROR).to_numpy()
    out["verdict"] = column(tags, schema.DIAGNOSIS).to_numpy()
    out["confidence"] = pd.to_numeric(column(tags, schema.DIAGNOSIS_CONFIDENCE), errors="coerce").to_numpy()
    best_key = f"{schema.BEST_PREFIX}{metric}"
    out["best"] = pd.to_numeric(column(latest, best_key), errors="coerce").to_numpy()
    out["final"] = pd.to_numeric(column(latest, f"{schema.FINAL_PREFIX}{metric}"), errors="coerce").to_numpy()
    # the metric's value at the last epoch logged (MLflow's latest value; NaN when that epoch's was)
    out["latest"] = pd.to_numeric(column(latest, metric), errors="coerce").to_numpy() if metric else np.nan
    out["epochs_run"] = pd.to_numeric(column(latest, schema.EPOCHS_RUN), errors="coerce").to_numpy()
    if not histories.empty:
        epochs = histories.groupby("run_id")["step"].max().reindex(ids).to_numpy()
        out["epochs_run"] = out["epochs_run"].fillna(pd.Series(epochs))
    if metric and not histories.empty:  # running trials have no summary metrics yet: use the curve so far
        curve = histories[histories["key"] == metric].groupby("run_id")["value"]
        so_far = pd.Series((curve.max() if goal == "maximize" else curve.min()).reindex(ids).to_numpy())
        out["best"] = out["best"].fillna(so_far.where(out["state"] != "failed"))
    out["start_time"] = timestamps(children["start_time"]).to_numpy()
    out["end_time"] = timestamps(children["end_time"]).to_numpy()
    out["duration_s"] = durations(children["start_time"], children["end_time"], out["state"]).to_numpy()
    out = pd.concat([out, param_columns(params, ids)], axis=1)
    # Trials without a number (a crashed writer) go last, in start order.
    out = out.sort_values(["trial_number", "start_time"], na_position="last", ignore_index=True)
    return out


def first_curves_of(children: pd.DataFrame, tags: pd.DataFrame, latest: pd.DataFrame, metric: str | None,
                    goal: str | None, top: int) -> list[str]:
    """The trials whose curves a sweep page needs before any click: running ones (their best so far comes
    from the curve), those without a logged verdict (diagnosed from the curves), and the ``top`` best by
    ``best_<metric>`` (the learning curves shown first). ``tags`` and ``latest`` are wide, indexed by run id."""
    ids = children["run_id"].tolist()
    running = (children["status"] == "RUNNING").to_numpy()
    unjudged = column(tags, schema.DIAGNOSIS).isna().to_numpy()
    best = pd.Series(pd.to_numeric(column(latest, f"{schema.BEST_PREFIX}{metric}"), errors="coerce").to_numpy(),
                     index=ids).dropna()
    ranked = best.sort_values(ascending=goal != "maximize", kind="stable").index[:top]
    wanted = set(ranked) | {r for r, a, b in zip(ids, running, unjudged, strict=True) if a or b}
    return [r for r in ids if r in wanted]


def param_columns(params: pd.DataFrame, ids: list[str]) -> pd.DataFrame:
    wide = to_wide(params, ids)
    columns = {}
    for name in sorted(wide.columns):
        values = [parse_param(v) if isinstance(v, str) else None for v in wide[name]]
        series = pd.Series(values, dtype="object")
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
            series = pd.to_numeric(series)
        columns[f"{PARAM_PREFIX}{name}"] = series.reset_index(drop=True)
    return pd.DataFrame(columns, index=range(len(ids)))


def to_wide(long: pd.DataFrame, ids: Sequence[str], value: str = "value") -> pd.DataFrame:
    """Long run_id/key/value rows -> one row per id in ``ids`` (same order), one column per key."""
    if long.empty:
        return pd.DataFrame(index=pd.Index(list(ids), name="run_id"))
    wide = long.drop_duplicates(["run_id", "key"], keep="last").pivot(index="run_id", columns="key", values=value)
    return wide.reindex(list(ids))


def column(wide: pd.DataFrame, key: str) -> pd.Series:
    if key in wide.columns:
        return wide[key].astype("object").where(wide[key].notna(), None)
    return pd.Series([None] * len(wide), index=wide.index, dtype="object")


def as_dict(long: pd.DataFrame) -> dict[str, Any]:
    return dict(zip(long["key"], long["value"], strict=True))


def sweep_bests(
    ids: Sequence[str], metrics: Sequence[str | None], goals: Sequence[str | None], latest: pd.DataFrame,
    child_best: pd.DataFrame, children: pd.DataFrame,
) -> list[float | None]:  # fmt: skip
    """Each sweep's best value: its own ``best.<metric>``, else (still running) the best over its trials so far.

    One pass per distinct metric, not per sweep: with 200 sweeps of 20 trials the per-sweep scans of
    every trial cost ~5 s. ``latest`` and ``child_best`` are wide frames indexed by run id; ``children``
    is indexed by run id with a ``parent_id`` column.
    """
    own_by_key: dict[str, pd.Series] = {}
    kids_by_key: dict[str, tuple[pd.Series, pd.Series]] = {}
    out: list[float | None] = []
    for pid, metric, goal in zip(ids, metrics, goals, strict=True):
        if not metric:
            out.append(None)
            continue
        key = f"{schema.BEST_PREFIX}{metric}"
        if key not in own_by_key:
            own_by_key[key] = pd.to_numeric(column(latest, key), errors="coerce")
            values = pd.to_numeric(column(child_best, key), errors="coerce")
            scored = pd.DataFrame({"parent": children["parent_id"].reindex(values.index), "value": values}).dropna()
            groups = scored.groupby("parent")["value"]
            kids_by_key[key] = (groups.min(), groups.max())
        own = own_by_key[key].get(pid)
        if own is not None and not pd.isna(own):
            out.append(float(own))
            continue
        lowest, highest = kids_by_key[key]
        best = (highest if goal == "maximize" else lowest).get(pid)
        out.append(None if best is None or pd.isna(best) else float(best))
    return out


def timestamp(ms: Any) -> pd.Timestamp | None:
    return None if ms is None or pd.isna(ms) else pd.Timestamp(int(ms), unit="ms", tz="UTC")


def timestamps(ms: pd.Series) -> pd.Series:
    return pd.to_datetime(pd.to_numeric(ms, errors="coerce"), unit="ms", utc=True)


def durations(start: pd.Series, end: pd.Series, states: pd.Series) -> pd.Series:
    """Seconds from start to end; to now for runs still going (or whose end was never logged)."""
    start_ms = pd.to_numeric(start, errors="coerce").to_numpy(dtype="float64")
    end_ms = pd.to_numeric(end, errors="coerce").to_numpy(dtype="float64")
    running = (states.to_numpy() == "running") | np.isnan(end_ms)
    return pd.Series((np.where(running, time.time() * 1000, end_ms) - start_ms) / 1000)


def epoch_points(histories: pd.DataFrame) -> pd.DataFrame:
    """Drop the summary metrics (best_*, final_*, epochs_run): they are not learning curves."""
    if histories.empty:  # an empty frame's key column has no string dtype for .str
        return empty_histories()
    keys = histories["key"]
    if isinstance(keys.dtype, pd.CategoricalDtype):  # decide per category, not per row (600k rows at scale)
        summary = keys.isin([c for c in keys.cat.categories if str(c).startswith(_SUMMARY_METRIC)])
    else:
        summary = keys.astype(str).str.startswith(_SUMMARY_METRIC)
    return histories[~summary].reset_index(drop=True)


def empty_histories() -> pd.DataFrame:
    return pd.DataFrame({"run_id": pd.Series([], dtype="object"), "key": pd.Series([], dtype="object"),
                         "step": pd.Series([], dtype="int64"), "value": pd.Series([], dtype="float64")})
