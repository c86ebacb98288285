"""Bulk reads of sweeps, trials and metric histories from the MLflow store ``hpo run`` writes.

One :class:`Store` per tracking URI. SQL stores (SQLite, PostgreSQL) are read with SQLAlchemy on
MLflow's own tables, one query per table for a whole sweep; server stores (``http://``) through
MlflowClient's search APIs and the server's bulk history endpoint. Nothing here imports
Streamlit: the CLI (``hpo best``, ``hpo diagnose``) uses the same reads as the dashboard.

Example:
    >>> store = Store("sqlite:////abs/.hpo/mlflow.db")
    >>> data = store.sweep(store.find_sweep("mnist-lr"))
    >>> data.trials.sort_values("best").head()
"""

from __future__ import annotations

import json
import logging
import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd

from tracker import _sql_reads, schema

logger = logging.getLogger(__name__)

__all__ = [
    "RunNotFound",
    "Store",
    "StoreUnavailable",
    "SweepData",
    "TrialData",
    "parse_param",
    "resolve_tracking_uri",
]

TrialState = Literal["finished", "failed", "stopped", "running"]
TRIAL_STATES: tuple[TrialState, ...] = ("finished", "failed", "stopped", "running")
PARAM_PREFIX = "p."  # trials frame column for hyperparameter <name> is "p.<name>"
_SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mssql")
_SUMMARY_METRIC = (schema.BEST_PREFIX, schema.FINAL_PREFIX, schema.EPOCHS_RUN)
_TRIAL_TAGS = (
    schema.TRIAL_NUMBER,
    schema.TRIAL_ID,
    schema.EARLY_STOPPED,
    schema.STOPPED_BY,
    schema.ERROR,
    schema.DIAGNOSIS,
    schema.DIAGNOSIS_CONFIDENCE,
    schema.ROLE,
)


class StoreUnavailable(Exception):
    """The tracking store cannot be reached or is not an MLflow store; the message says what to do."""


class RunNotFound(KeyError):
    """No active run with this id (never logged, or deleted in MLflow) or not of the expected kind."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else "run not found"


def resolve_tracking_uri(uri: str | None = None) -> str:
    """The tracking URI to read: ``uri``, else ``MLFLOW_TRACKING_URI``, else ``./.hpo/mlflow.db``.

    Relative SQLite paths become absolute (relative to the current directory), so a cached
    :class:`Store` keeps pointing at the same file.
    """
    uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / '.hpo' / 'mlflow.db'}"
    if uri.startswith("sqlite:///"):
        path, sep, query = uri[len("sqlite:///") :].partition("?")
        if path and path != ":memory:" and not os.path.isabs(path):
            uri = f"sqlite:///{(Path.cwd() / path).resolve()}{sep}{query}"
    elif "://" not in uri:  # a bare path to a database file
        uri = f"sqlite:///{Path(uri).resolve()}"
    return uri


def parse_param(value: str | None) -> Any:
    """MLflow stores params as strings; give back the bool, int, float or None they were logged from."""
    if value is None:
        return None
    text = value.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return value
    return number if math.isfinite(number) or lowered in ("inf", "-inf", "nan") else value


@dataclass
class SweepData:
    """A sweep's parent run and all its trials.

    ``trials``: one row per trial run, sorted by ``trial_number``; columns run_id, trial_number,
    name, status (MLflow's), state (finished/failed/stopped/running), early_stopped, stopped_by,
    error, verdict, confidence, best (the trial's best value of the sweep metric), final, epochs_run,
    start_time, end_time, duration_s, and ``p.<name>`` per hyperparameter (parsed values; missing
    where a conditional parameter was inactive).
    ``histories``: long frame run_id, key, step, value of every per-epoch metric of every trial.
    """

    run_id: str
    experiment_id: str
    experiment: str
    name: str
    method: str | None
    sampler: str | None
    metric: str | None
    goal: str | None
    state: str
    status: str
    start_time: pd.Timestamp | None
    end_time: pd.Timestamp | None
    artifact_uri: str | None
    tags: dict[str, str]
    params: dict[str, str]
    metrics: dict[str, float]
    trials: pd.DataFrame
    histories: pd.DataFrame

    @property
    def param_names(self) -> list[str]:
        return [c[len(PARAM_PREFIX) :] for c in self.trials.columns if c.startswith(PARAM_PREFIX)]

    @property
    def maximize(self) -> bool:
        return self.goal == "maximize"

    @property
    def best_trial(self) -> pd.Series | None:
        """The row of the best finished-or-stopped trial by ``best`` (``None`` when none has a value)."""
        scored = self.trials[self.trials["best"].notna()]
        if scored.empty:
            return None
        return scored.loc[scored["best"].idxmax() if self.maximize else scored["best"].idxmin()]


@dataclass
class TrialData:
    """One trial run: parsed params, all tags, latest metrics, per-epoch histories, artifact paths."""

    run_id: str
    experiment_id: str
    experiment: str
    name: str | None
    status: str
    state: TrialState
    parent_run_id: str | None
    trial_number: int | None
    start_time: pd.Timestamp | None
    end_time: pd.Timestamp | None
    artifact_uri: str | None
    params: dict[str, Any]
    tags: dict[str, str]
    metrics: dict[str, float]
    histories: pd.DataFrame
    artifacts: list[str] = field(default_factory=list)
    diagnosis: dict[str, Any] | None = None  # diagnosis.json as logged, when present

    def curves(self) -> dict[str, list[float | None]]:
        """Per-epoch values by key, indexed epoch 1..N (``None`` where an epoch lacks the key)."""
        return history_dict(self.histories, self.run_id)


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


class Store:
    """Read-only view of one tracking store.

    Args:
        tracking_uri: ``sqlite:///...``, ``postgresql://...`` or ``http(s)://host:port``;
            ``None`` resolves through :func:`resolve_tracking_uri`.

    Raises:
        StoreUnavailable: the store cannot be opened; the message names the URI and the fix.
    """

    def __init__(self, tracking_uri: str | None = None) -> None:
        self.tracking_uri = resolve_tracking_uri(tracking_uri)
        scheme = self.tracking_uri.split(":", 1)[0].split("+", 1)[0].lower()
        self._engine = None
        self._client = None
        if scheme in _SQL_SCHEMES:
            try:
                self._engine = _sql_reads.create_engine(self.tracking_uri)
            except _sql_reads.SqlUnavailable as e:
                raise StoreUnavailable(str(e)) from e
        else:
            from tracker._mlflow_reads import ClientReads, ClientUnavailable

            try:
                self._client = ClientReads(self.tracking_uri)
            except ClientUnavailable as e:
                raise StoreUnavailable(str(e)) from e

    # -- backend dispatch: the SQL functions and ClientReads share names and signatures ----------------
    def _call(self, name: str, *args: Any, **kwargs: Any) -> Any:
        try:
            if self._engine is not None:
                return getattr(_sql_reads, name)(self._engine, *args, **kwargs)
            return getattr(self._client, name)(*args, **kwargs)
        except StoreUnavailable:
            raise
        except Exception as e:
            if _is_connection_error(e):
                raise StoreUnavailable(f"lost the tracking store {self.display_uri}: {e}") from e
            raise

    @property
    def display_uri(self) -> str:
        """The URI without any password, for messages."""
        if self._engine is not None and not self.tracking_uri.startswith("sqlite"):
            return self._engine.url.render_as_string(hide_password=True)
        return self.tracking_uri

    # -- sweeps --------------------------------------------------------------------------------------
    def list_sweeps(self) -> pd.DataFrame:
        """One row per sweep parent run, newest first.

        Columns: run_id, experiment_id, experiment, sweep, method, sampler, metric, goal, state,
        trials_total (planned), trials_finished, trials_failed, trials_stopped, trials_running,
        best_metric, start_time, duration_s.
        """
        parents = self._call("sweep_runs")
        columns = [
            "run_id", "experiment_id", "experiment", "sweep", "method", "sampler", "metric", "goal", "state",
            "trials_total", *(f"trials_{s}" for s in TRIAL_STATES), "best_metric", "start_time", "duration_s",
        ]  # fmt: skip
        if parents.empty:
            return pd.DataFrame(columns=columns)
        ids = parents["run_id"].tolist()
        tags = _wide(self._call("key_values", "tags", ids), ids)
        latest = _wide(self._call("latest_metrics", ids), ids, "value")
        children = self._call("child_runs", ids)
        child_ids = children["run_id"].tolist()
        child_tags = _wide(self._call("key_values", "tags", child_ids, [schema.EARLY_STOPPED]), child_ids)
        metrics = {f"{schema.BEST_PREFIX}{m}" for m in _col(tags, schema.METRIC).dropna()}
        child_best = _wide(self._call("latest_metrics", child_ids, sorted(metrics)), child_ids, "value")
        children = children.set_index("run_id")
        children["state"] = [
            trial_state(s, e == "true")
            for s, e in zip(children["status"], _col(child_tags, schema.EARLY_STOPPED), strict=True)
        ]
        out = pd.DataFrame({"run_id": ids})
        out["experiment_id"] = parents["experiment_id"].to_numpy()
        out["experiment"] = parents["experiment"].to_numpy()
        out["sweep"] = _col(tags, schema.SWEEP).fillna(parents.set_index("run_id")["name"]).to_numpy()
        for name, key in (("method", schema.METHOD), ("sampler", schema.SAMPLER), ("metric", schema.METRIC),
                          ("goal", schema.GOAL)):  # fmt: skip
            out[name] = _col(tags, key).to_numpy()
        out["state"] = [
            sweep_state(t, s) for t, s in zip(_col(tags, schema.SWEEP_STATE), parents["status"], strict=True)
        ]
        out["trials_total"] = pd.to_numeric(_col(tags, schema.TRIALS_TOTAL), errors="coerce").to_numpy()
        counts = children.groupby(["parent_id", "state"]).size().unstack(fill_value=0)
        for state in TRIAL_STATES:
            col = counts[state] if state in counts else pd.Series(dtype="int64")
            out[f"trials_{state}"] = col.reindex(ids).fillna(0).astype("int64").to_numpy()
        out["best_metric"] = [
            _sweep_best(pid, metric, goal, latest, child_best, children)
            for pid, metric, goal in zip(ids, out["metric"], out["goal"], strict=True)
        ]
        out["start_time"] = _timestamps(parents["start_time"]).to_numpy()
        out["duration_s"] = _durations(parents["start_time"], parents["end_time"], out["state"]).to_numpy()
        return out[columns].sort_values("start_time", ascending=False, ignore_index=True)

    def find_sweep(self, name: str) -> str | None:
        """The parent run id of the latest sweep called ``name`` (tag hpo.sweep), or ``None``."""
        sweeps = self.list_sweeps()
        match = sweeps[sweeps["sweep"] == name]
        return None if match.empty else str(match.iloc[0]["run_id"])

    def sweep(self, parent_run_id: str) -> SweepData:
        """Everything the sweep page shows: parent tags, the trials frame, all histories (one query).

        Raises:
            RunNotFound: no active run ``parent_run_id``, or it is not a sweep parent run.
        """
        parent = self._run(parent_run_id)
        ptags = _as_dict(self._call("key_values", "tags", [parent_run_id]))
        if ptags.get(schema.ROLE) != schema.ROLE_SWEEP:
            raise RunNotFound(
                f"run {parent_run_id} is not a sweep (tag {schema.ROLE}={ptags.get(schema.ROLE)!r}, "
                f"expected {schema.ROLE_SWEEP!r}); open trials on the Trial page."
            )
        children = self._call("child_runs", [parent_run_id])
        ids = children["run_id"].tolist()
        histories = self._call("metric_histories", ids) if ids else _empty_histories()
        histories = _epoch_points(histories)
        metric, goal = ptags.get(schema.METRIC), ptags.get(schema.GOAL)
        trials = _trials_frame(
            children,
            _wide(self._call("key_values", "tags", ids, list(_TRIAL_TAGS)), ids),
            self._call("key_values", "params", ids),
            _wide(self._call("latest_metrics", ids), ids, "value"),
            histories,
            metric,
            goal,
        )
        return SweepData(
            run_id=parent_run_id,
            experiment_id=str(parent["experiment_id"]),
            experiment=str(parent["experiment"]),
            name=ptags.get(schema.SWEEP) or str(parent["name"]),
            method=ptags.get(schema.METHOD),
            sampler=ptags.get(schema.SAMPLER),
            metric=metric,
            goal=goal,
            state=sweep_state(ptags.get(schema.SWEEP_STATE), parent["status"]),
            status=str(parent["status"]),
            start_time=_timestamp(parent["start_time"]),
            end_time=_timestamp(parent["end_time"]),
            artifact_uri=parent["artifact_uri"],
            tags=ptags,
            params=_as_dict(self._call("key_values", "params", [parent_run_id])),
            metrics=_as_dict(self._call("latest_metrics", [parent_run_id])),
            trials=trials,
            histories=histories,
        )

    def sweep_fingerprint(self, parent_run_id: str) -> str:
        """A cheap token that changes whenever the sweep does (state, trials, epochs logged, deletions)."""
        state = self._call("key_values", "tags", [parent_run_id], [schema.SWEEP_STATE])
        children = self._call("child_runs", [parent_run_id])
        ids = sorted(children["run_id"])
        steps = self._call("latest_metrics", ids, list(schema.EPOCH_METRICS)) if ids else None
        parts = [
            ",".join(state["value"]),
            ",".join(f"{r}:{s}" for r, s in sorted(zip(children["run_id"], children["status"], strict=True))),
            "" if steps is None else f"{len(steps)}:{pd.to_numeric(steps['step']).fillna(0).sum()}",
        ]
        return "|".join(parts)

    # -- trials --------------------------------------------------------------------------------------
    def trial(self, run_id: str) -> TrialData:
        """One trial with its histories, artifact list and logged diagnosis.

        Raises:
            RunNotFound: no active run ``run_id`` (never logged, or deleted in MLflow).
        """
        run = self._run(run_id)
        tags = _as_dict(self._call("key_values", "tags", [run_id]))
        latest = _as_dict(self._call("latest_metrics", [run_id]))
        params = {k: parse_param(v) for k, v in _as_dict(self._call("key_values", "params", [run_id])).items()}
        histories = self._call("metric_histories", [run_id])
        histories = _epoch_points(histories)
        artifacts = self.list_artifacts(run_id, run["artifact_uri"])
        diagnosis = None
        if schema.DIAGNOSIS_ARTIFACT in artifacts:
            diagnosis = self.read_json_artifact(run_id, schema.DIAGNOSIS_ARTIFACT, run["artifact_uri"])
        number = parse_param(tags.get(schema.TRIAL_NUMBER))
        return TrialData(
            run_id=run_id,
            experiment_id=str(run["experiment_id"]),
            experiment=str(run["experiment"]),
            name=run["name"],
            status=str(run["status"]),
            state=trial_state(str(run["status"]), tags.get(schema.EARLY_STOPPED) == "true"),
            parent_run_id=tags.get(schema.PARENT_RUN_ID),
            trial_number=number if isinstance(number, int) else None,
            start_time=_timestamp(run["start_time"]),
            end_time=_timestamp(run["end_time"]),
            artifact_uri=run["artifact_uri"],
            params=params,
            tags=tags,
            metrics=latest,
            histories=histories,
            artifacts=artifacts,
            diagnosis=diagnosis,
        )

    def _run(self, run_id: str) -> pd.Series:
        runs = self._call("runs_by_id", [run_id])
        if runs.empty:
            raise RunNotFound(f"no run {run_id!r} in {self.display_uri}: never logged there, or deleted in MLflow.")
        return runs.iloc[0]

    # -- artifacts -----------------------------------------------------------------------------------
    def list_artifacts(self, run_id: str, artifact_uri: str | None = None, *, max_files: int = 500) -> list[str]:
        """Artifact paths of a run (files only); ``[]`` when the artifact location is unreadable."""
        try:
            uri = artifact_uri or self._run(run_id)["artifact_uri"]
            local = _local_dir(uri) if self._client is None else None
            if local is not None:  # the embedded default: read the folder, no MLflow import
                found = sorted(p.relative_to(local).as_posix() for p in local.rglob("*") if p.is_file())
                return found[:max_files]
            files: list[str] = []
            todo: list[str | None] = [None]
            repo = None if self._client else _artifact_repo(uri)
            while todo and len(files) < max_files:
                path = todo.pop(0)
                source: Any = repo or self._client
                entries = repo.list_artifacts(path) if repo else source.list_artifacts(run_id, path)
                for entry in entries:
                    (todo.append(entry.path) if entry.is_dir else files.append(entry.path))
            return sorted(files)
        except Exception as e:  # an artifact store we cannot reach must not hide the run
            logger.info("cannot list artifacts of run %s: %s", run_id, e)
            return []

    def download_artifact(self, run_id: str, path: str, dst: str, artifact_uri: str | None = None) -> str:
        """A local copy of one artifact (under ``dst`` unless it already is a local file); its path."""
        if self._client is not None:
            return self._client.download_artifact(run_id, path, dst)
        uri = artifact_uri or self._run(run_id)["artifact_uri"]
        local = _local_dir(uri)
        if local is not None:
            return str(local / path)
        return str(_artifact_repo(uri).download_artifacts(path, dst))

    def local_artifact_path(self, path: str, artifact_uri: str | None) -> Path | None:
        """Where an artifact already lies on this machine (a local artifact folder), else ``None``."""
        local = _local_dir(artifact_uri) if self._client is None else None
        return None if local is None else local / path

    def read_json_artifact(self, run_id: str, path: str, artifact_uri: str | None = None) -> dict[str, Any] | None:
        """A small JSON artifact (diagnosis.json, diagnosis_summary.json), or ``None`` if unreadable."""
        try:
            with tempfile.TemporaryDirectory() as tmp:
                local = self.download_artifact(run_id, path, tmp, artifact_uri)
                data = json.loads(Path(local).read_text())
        except Exception as e:
            logger.info("cannot read artifact %s of run %s: %s", path, run_id, e)
            return None
        return data if isinstance(data, dict) else None


# -- frame shaping --------------------------------------------------------------------------------------
def sweep_state(tag: str | None, status: str) -> str:
    """The sweep's state tag, or one derived from the parent run's status when the tag is missing."""
    if isinstance(tag, str) and tag:
        return tag
    return {"RUNNING": "running", "FINISHED": "finished", "FAILED": "failed"}.get(status, "interrupted")


def _trials_frame(
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
    number = pd.to_numeric(_col(tags, schema.TRIAL_NUMBER), errors="coerce").to_numpy()
    out["trial_number"] = number
    out["name"] = children["name"].to_numpy()
    out["status"] = children["status"].to_numpy()
    early = (_col(tags, schema.EARLY_STOPPED) == "true").to_numpy()
    out["state"] = [trial_state(s, e) for s, e in zip(out["status"], early, strict=True)]
    out["early_stopped"] = early
    out["stopped_by"] = _col(tags, schema.STOPPED_BY).to_numpy()
    out["error"] = _col(tags, schema.ERROR).to_numpy()
    out["verdict"] = _col(tags, schema.DIAGNOSIS).to_numpy()
    out["confidence"] = pd.to_numeric(_col(tags, schema.DIAGNOSIS_CONFIDENCE), errors="coerce").to_numpy()
    best_key = f"{schema.BEST_PREFIX}{metric}"
    out["best"] = pd.to_numeric(_col(latest, best_key), errors="coerce").to_numpy()
    out["final"] = pd.to_numeric(_col(latest, f"{schema.FINAL_PREFIX}{metric}"), errors="coerce").to_numpy()
    out["epochs_run"] = pd.to_numeric(_col(latest, schema.EPOCHS_RUN), errors="coerce").to_numpy()
    if not histories.empty:
        epochs = histories.groupby("run_id")["step"].max().reindex(ids).to_numpy()
        out["epochs_run"] = out["epochs_run"].fillna(pd.Series(epochs))
    if metric and not histories.empty:  # running trials have no summary metrics yet: use the curve so far
        curve = histories[histories["key"] == metric].groupby("run_id")["value"]
        so_far = pd.Series((curve.max() if goal == "maximize" else curve.min()).reindex(ids).to_numpy())
        out["best"] = out["best"].fillna(so_far.where(out["state"] != "failed"))
    out["start_time"] = _timestamps(children["start_time"]).to_numpy()
    out["end_time"] = _timestamps(children["end_time"]).to_numpy()
    out["duration_s"] = _durations(children["start_time"], children["end_time"], out["state"]).to_numpy()
    out = pd.concat([out, _param_columns(params, ids)], axis=1)
    # Trials without a number (a crashed writer) go last, in start order.
    out = out.sort_values(["trial_number", "start_time"], na_position="last", ignore_index=True)
    return out


def _param_columns(params: pd.DataFrame, ids: list[str]) -> pd.DataFrame:
    wide = _wide(params, ids)
    columns = {}
    for name in sorted(wide.columns):
        values = [parse_param(v) if isinstance(v, str) else None for v in wide[name]]
        series = pd.Series(values, dtype="object")
        present = [v for v in values if v is not None]
        if present and all(isinstance(v, int | float) and not isinstance(v, bool) for v in present):
            series = pd.to_numeric(series)
        columns[f"{PARAM_PREFIX}{name}"] = series.reset_index(drop=True)
    return pd.DataFrame(columns, index=range(len(ids)))


def _wide(long: pd.DataFrame, ids: Sequence[str], value: str = "value") -> pd.DataFrame:
    """Long run_id/key/value rows -> one row per id in ``ids`` (same order), one column per key."""
    if long.empty:
        return pd.DataFrame(index=pd.Index(list(ids), name="run_id"))
    wide = long.drop_duplicates(["run_id", "key"], keep="last").pivot(index="run_id", columns="key", values=value)
    return wide.reindex(list(ids))


def _col(wide: pd.DataFrame, key: str) -> pd.Series:
    if key in wide.columns:
        return wide[key].astype("object").where(wide[key].notna(), None)
    return pd.Series([None] * len(wide), index=wide.index, dtype="object")


def _as_dict(long: pd.DataFrame) -> dict[str, Any]:
    return dict(zip(long["key"], long["value"], strict=True))


def _sweep_best(
    pid: str, metric: str | None, goal: str | None, latest: pd.DataFrame, child_best: pd.DataFrame,
    children: pd.DataFrame,
) -> float | None:  # fmt: skip
    if not metric:
        return None
    key = f"{schema.BEST_PREFIX}{metric}"
    own = _col(latest, key).get(pid)
    if own is not None and not pd.isna(own):
        return float(own)
    # No sweep-level value yet (still running): best over the trials logged so far.
    kids = children.index[children["parent_id"] == pid]
    values = pd.to_numeric(_col(child_best, key).reindex(kids), errors="coerce").dropna()
    if values.empty:
        return None
    return float(values.max() if goal == "maximize" else values.min())


def _timestamp(ms: Any) -> pd.Timestamp | None:
    return None if ms is None or pd.isna(ms) else pd.Timestamp(int(ms), unit="ms", tz="UTC")


def _timestamps(ms: pd.Series) -> pd.Series:
    return pd.to_datetime(pd.to_numeric(ms, errors="coerce"), unit="ms", utc=True)


def _durations(start: pd.Series, end: pd.Series, states: pd.Series) -> pd.Series:
    """Seconds from start to end; to now for runs still going (or whose end was never logged)."""
    start_ms = pd.to_numeric(start, errors="coerce").to_numpy(dtype="float64")
    end_ms = pd.to_numeric(end, errors="coerce").to_numpy(dtype="float64")
    running = (states.to_numpy() == "running") | np.isnan(end_ms)
    return pd.Series((np.where(running, time.time() * 1000, end_ms) - start_ms) / 1000)


def _epoch_points(histories: pd.DataFrame) -> pd.DataFrame:
    """Drop the summary metrics (best_*, final_*, epochs_run): they are not learning curves."""
    if histories.empty:  # an empty frame's key column has no string dtype for .str
        return _empty_histories()
    keys = histories["key"]
    if isinstance(keys.dtype, pd.CategoricalDtype):  # decide per category, not per row (600k rows at scale)
        summary = keys.isin([c for c in keys.cat.categories if str(c).startswith(_SUMMARY_METRIC)])
    else:
        summary = keys.astype(str).str.startswith(_SUMMARY_METRIC)
    return histories[~summary].reset_index(drop=True)


def _empty_histories() -> pd.DataFrame:
    return pd.DataFrame({"run_id": pd.Series([], dtype="object"), "key": pd.Series([], dtype="object"),
                         "step": pd.Series([], dtype="int64"), "value": pd.Series([], dtype="float64")})


def _local_dir(artifact_uri: str | None) -> Path | None:
    """The folder of a local artifact location (a path or ``file://`` URI), else ``None``."""
    if not artifact_uri:
        return None
    if artifact_uri.startswith("file://"):
        from urllib.parse import unquote, urlparse

        return Path(unquote(urlparse(artifact_uri).path))
    return Path(artifact_uri) if "://" not in artifact_uri and ":/" not in artifact_uri else None


def _artifact_repo(artifact_uri: str) -> Any:
    from mlflow.store.artifact.artifact_repository_registry import get_artifact_repository

    return get_artifact_repository(artifact_uri)


def _is_connection_error(error: Exception) -> bool:
    import sqlalchemy as sa

    if isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError):
        return True
    try:
        import requests
    except ImportError:
        return False
    return isinstance(error, requests.ConnectionError)
