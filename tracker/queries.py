"""Bulk reads of sweeps, trials and metric histories from the MLflow store ``hpo run`` writes.

One :class:`Store` per tracking URI, over one :class:`tracker._backend.ReadBackend`: SQL stores
(SQLite, PostgreSQL) are read with SQLAlchemy on MLflow's own tables, one query per table for a whole
sweep; server stores (``http://``) through MlflowClient's search APIs and the server's bulk history
endpoint. Runs are selected by their run kind (``tracker.schema``): a sweep's trial tables hold its
``trial`` children only. Nothing here imports Streamlit: the CLI (``hpo best``, ``hpo diagnose``) uses
the same reads as the dashboard.

Example:
    >>> store = Store("sqlite:////abs/.hpo/mlflow.db")
    >>> data = store.sweep(store.find_sweep("mnist-lr"))
    >>> data.trials.sort_values("best").head()
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from tracker import schema
from tracker._backend import ReadBackend
from tracker._frames import (
    PARAM_PREFIX,
    TRIAL_STATES,
    TrialState,
    as_dict,
    column,
    durations,
    empty_histories,
    epoch_points,
    first_curves_of,
    history_dict,
    sweep_bests,
    sweep_state,
    timestamp,
    timestamps,
    to_wide,
    trial_state,
    trials_frame,
)
from tracker.errors import StoreUnavailable
from tracker.params import parse_param, present
from tracker.uri import resolve_tracking_uri

logger = logging.getLogger(__name__)

__all__ = [
    "PARAM_PREFIX",
    "TRIAL_STATES",
    "RunNotFound",
    "Store",
    "StoreUnavailable",
    "SweepData",
    "TrialData",
    "history_dict",
    "parse_param",
    "present",
    "resolve_tracking_uri",
]

_SQL_SCHEMES = ("sqlite", "postgresql", "postgres", "mysql", "mssql")
_TRIAL_TAGS = (
    schema.TRIAL_NUMBER,
    schema.TRIAL_ID,
    schema.EARLY_STOPPED,
    schema.STOPPED_BY,
    schema.ERROR,
    schema.DIAGNOSIS,
    schema.DIAGNOSIS_CONFIDENCE,
)
FIRST_CURVES = 6  # Store.sweep(first_curves=True): the best trials whose curves are read at once (the
# sweep page's learning-curve picker starts on the best three and the running ones, six at most)
_BEAT_TAGS = (schema.HEARTBEAT, schema.DRIVER_HOST, schema.DRIVER_PID)  # a running sweep's driver liveness


class RunNotFound(KeyError):
    """No active run with this id (never logged, or deleted in MLflow) or not of the expected kind."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0]) if self.args else "run not found"


@dataclass
class SweepData:
    """A sweep's parent run and all its trials.

    ``trials``: one row per trial run, sorted by ``trial_number``; columns run_id, trial_number,
    name, status (MLflow's), state (finished/failed/stopped/running), early_stopped, stopped_by,
    error, verdict, confidence, best (the trial's best value of the sweep metric), final, latest (its
    value at the last epoch logged), epochs_run, start_time, end_time, duration_s, and ``p.<name>`` per
    hyperparameter (parsed values; missing where a conditional parameter was inactive).
    ``histories``: long frame run_id, key, step, value of every per-epoch metric of every trial, or
    of the trials in ``curves_of`` when that is set (``Store.sweep(first_curves=True)``).
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
    curves_of: frozenset[str] | None = None  # the trials whose histories were read; None: every trial's

    @property
    def param_names(self) -> list[str]:
        return [c[len(PARAM_PREFIX) :] for c in self.trials.columns if c.startswith(PARAM_PREFIX)]

    @property
    def maximize(self) -> bool:
        return self.goal == "maximize"

    @property
    def best_trial(self) -> pd.Series | None:
        """The row of the best finished-or-stopped trial by ``best`` (``None`` when none has a value)."""
        scored = self.trials[self.trials["best"].notna() & (self.trials["state"] != "failed")]
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

    @property
    def kind(self) -> str | None:
        """The run kind (``trial``, ``sweep``, ...; ``tracker.schema``), ``None`` for a run we did not write."""
        return schema.run_kind(self.tags)

    def curves(self) -> dict[str, list[float | None]]:
        """Per-epoch values by key, indexed epoch 1..N (``None`` where an epoch lacks the key)."""
        return history_dict(self.histories, self.run_id)


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
        self._backend: ReadBackend
        if scheme in _SQL_SCHEMES:
            from tracker._sql_reads import SqlReads

            self._backend = SqlReads(self.tracking_uri)
        else:
            from tracker._mlflow_reads import ClientReads

            self._backend = ClientReads(self.tracking_uri)

    @contextlib.contextmanager
    def _reading(self) -> Iterator[ReadBackend]:
        """One consistent read; a store lost on the way raises :class:`StoreUnavailable`, not a driver error."""
        try:
            with self._backend.session():
                self._backend.check()
                yield self._backend
        except StoreUnavailable:
            raise
        except Exception as e:
            if _is_connection_error(e):
                raise StoreUnavailable(f"lost the tracking store {self.display_uri}: {e}") from e
            raise

    @property
    def display_uri(self) -> str:
        """The URI without any password, for messages."""
        return self._backend.display_uri

    # -- sweeps --------------------------------------------------------------------------------------
    def list_sweeps(self) -> pd.DataFrame:
        """One row per sweep parent run, newest first.

        Columns: run_id, experiment_id, experiment, sweep, method, sampler, metric, goal, state,
        trials_total (planned), trials_finished, trials_failed, trials_stopped, trials_running,
        best_metric, start_time, duration_s.
        """
        with self._reading() as db:
            parents = db.sweep_runs()
            columns = [
                "run_id", "experiment_id", "experiment", "sweep", "method", "sampler", "metric", "goal", "state",
                "trials_total", *(f"trials_{s}" for s in TRIAL_STATES), "best_metric", "start_time", "duration_s",
            ]  # fmt: skip
            if parents.empty:
                return pd.DataFrame(columns=columns)
            ids = parents["run_id"].tolist()
            tags = to_wide(db.key_values("tags", ids), ids)
            latest = to_wide(db.latest_metrics(ids), ids, "value")
            children = db.child_runs(ids, schema.KIND_TRIAL)
            child_ids = children["run_id"].tolist()
            child_tags = to_wide(db.key_values("tags", child_ids, [schema.EARLY_STOPPED]), child_ids)
            metrics = {f"{schema.BEST_PREFIX}{m}" for m in column(tags, schema.METRIC).dropna()}
            child_best = to_wide(db.latest_metrics(child_ids, sorted(metrics)), child_ids, "value")
            children = children.set_index("run_id")
            children["state"] = [
                trial_state(s, e == "true")
                for s, e in zip(children["status"], column(child_tags, schema.EARLY_STOPPED), strict=True)
            ]
            out = pd.DataFrame({"run_id": ids})
            out["experiment_id"] = parents["experiment_id"].to_numpy()
            out["experiment"] = parents["experiment"].to_numpy()
            out["sweep"] = column(tags, schema.SWEEP).fillna(parents.set_index("run_id")["name"]).to_numpy()
            for name, key in (("method", schema.METHOD), ("sampler", schema.SAMPLER), ("metric", schema.METRIC),
                              ("goal", schema.GOAL)):  # fmt: skip
                out[name] = column(tags, key).to_numpy()
            beats = [dict(zip(_BEAT_TAGS, values, strict=True))
                     for values in zip(*(column(tags, k) for k in _BEAT_TAGS), strict=True)]
            out["state"] = [
                sweep_state(t, s, b)
                for t, s, b in zip(column(tags, schema.SWEEP_STATE), parents["status"], beats, strict=True)
            ]
            out["trials_total"] = pd.to_numeric(column(tags, schema.TRIALS_TOTAL), errors="coerce").to_numpy()
            counts = children.groupby(["parent_id", "state"]).size().unstack(fill_value=0)
            for state in TRIAL_STATES:
                col = counts[state] if state in counts else pd.Series(dtype="int64")
                out[f"trials_{state}"] = col.reindex(ids).fillna(0).astype("int64").to_numpy()
            out["best_metric"] = sweep_bests(ids, list(out["metric"]), list(out["goal"]), latest, child_best, children)
            out["start_time"] = timestamps(parents["start_time"]).to_numpy()
            out["duration_s"] = durations(parents["start_time"], parents["end_time"], out["state"]).to_numpy()
            return out[columns].sort_values("start_time", ascending=False, ignore_index=True)

    def find_sweep(self, name: str) -> str | None:
        """The parent run id of the latest sweep called ``name`` (tag hpo.sweep), or ``None``."""
        sweeps = self.list_sweeps()
        match = sweeps[sweeps["sweep"] == name]
        return None if match.empty else str(match.iloc[0]["run_id"])

    def sweep(self, parent_run_id: str, skip: Sequence[str] = (), first_curves: bool = False) -> SweepData:
        """A sweep: parent tags, the trials frame and the trials' per-epoch histories (one query for them all,
        or for those ``skip`` and ``first_curves`` leave).

        Args:
            parent_run_id: the sweep's parent run.
            skip: prefixes of metric names whose per-epoch histories are not read (their latest values
                still are). The sweep page skips the training signals (``signals/``): they are two thirds
                of a built-in trainer's points, and only the trial page draws them.
            first_curves: read the histories a page draws first only (``first_curves``: running trials,
                trials without a logged verdict, the best ``FIRST_CURVES``); :meth:`histories` reads the
                others when asked. A 1,000-trial sweep of 100 epochs holds 600k points; a page shows a few
                hundred of them.

        Raises:
            RunNotFound: no active run ``parent_run_id``, or it is not a sweep parent run.
        """
        with self._reading() as db:
            parent = self._run(db, parent_run_id)
            ptags = as_dict(db.key_values("tags", [parent_run_id]))
            kind = schema.run_kind(ptags)
            if kind != schema.KIND_SWEEP:
                raise RunNotFound(
                    f"run {parent_run_id} is not a sweep (tag {schema.RUN_KIND}={kind!r}, "
                    f"expected {schema.KIND_SWEEP!r}); open trials on the Trial page."
                )
            children = db.child_runs([parent_run_id], schema.KIND_TRIAL)
            ids = children["run_id"].tolist()
            metric, goal = ptags.get(schema.METRIC), ptags.get(schema.GOAL)
            latest = db.latest_metrics(ids)
            tags, latest_wide = to_wide(db.key_values("tags", ids, list(_TRIAL_TAGS)), ids), to_wide(latest, ids)
            read = first_curves_of(children, tags, latest_wide, metric, goal, FIRST_CURVES) if first_curves else ids
            histories = self._histories(db, read, latest, skip)
            trials = trials_frame(children, tags, db.key_values("params", ids), latest_wide, histories, metric, goal)
            return SweepData(
                run_id=parent_run_id,
                experiment_id=str(parent["experiment_id"]),
                experiment=str(parent["experiment"]),
                name=ptags.get(schema.SWEEP) or str(parent["name"]),
                method=ptags.get(schema.METHOD),
                sampler=ptags.get(schema.SAMPLER),
                metric=metric,
                goal=goal,
                state=sweep_state(ptags.get(schema.SWEEP_STATE), parent["status"], ptags),
                status=str(parent["status"]),
                start_time=timestamp(parent["start_time"]),
                end_time=timestamp(parent["end_time"]),
                artifact_uri=parent["artifact_uri"],
                tags=ptags,
                params=as_dict(db.key_values("params", [parent_run_id])),
                metrics=as_dict(db.latest_metrics([parent_run_id])),
                trials=trials,
                histories=histories,
                curves_of=frozenset(read) if first_curves else None,
            )

    def histories(self, run_ids: Sequence[str], skip: Sequence[str] = ()) -> pd.DataFrame:
        """The per-epoch histories of ``run_ids`` (long: run_id, key, step, value), without summary metrics
        and without the keys starting with a prefix in ``skip``."""
        with self._reading() as db:
            return self._histories(db, list(run_ids), db.latest_metrics(list(run_ids)) if skip else None, skip)

    @staticmethod
    def _histories(db: ReadBackend, ids: list[str], latest: pd.DataFrame | None, skip: Sequence[str]) -> pd.DataFrame:
        if not ids:
            return empty_histories()
        # every key a run logged has a latest value: read the histories of the wanted ones only
        keys = None if not skip or latest is None else [
            k for k in sorted(set(latest.loc[latest["run_id"].isin(ids), "key"])) if not k.startswith(tuple(skip))]
        return epoch_points(db.metric_histories(ids, keys)) if keys != [] else empty_histories()

    def sweep_fingerprint(self, parent_run_id: str) -> str:
        """A cheap token that changes whenever the sweep does (state, trials, epochs logged, deletions)."""
        with self._reading() as db:
            tags = db.key_values("tags", [parent_run_id], [schema.SWEEP_STATE, schema.METRIC])
            tag = dict(zip(tags["key"], tags["value"], strict=True))
            children = db.child_runs([parent_run_id], schema.KIND_TRIAL)
            ids = sorted(children["run_id"])
            # the sweep metric too: a custom trainer may report none of the usual epoch metrics
            keys = sorted({*schema.EPOCH_METRICS, *([tag[schema.METRIC]] if tag.get(schema.METRIC) else [])})
            latest = db.latest_metrics(ids, keys) if ids else None
            if latest is None:
                epochs = ""
            else:  # a server's latest metrics carry no step, but their values move with every epoch
                values = pd.to_numeric(latest["value"], errors="coerce").fillna(0)
                steps = pd.to_numeric(latest["step"], errors="coerce").fillna(0)
                epochs = f"{len(latest)}:{steps.sum():g}:{values.sum():.12g}"
            parts = [
                tag.get(schema.SWEEP_STATE, ""),
                ",".join(f"{r}:{s}" for r, s in sorted(zip(children["run_id"], children["status"], strict=True))),
                epochs,
            ]
            return "|".join(parts)

    def confirm_runs(self, parent_run_id: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        """A sweep's seed-confirmation runs (``hpo.confirm``) and their per-epoch histories.

        Returns:
            (runs, histories): runs has one row per confirm run with run_id, status, confirms (the trial
            run it re-runs), seed; histories is the long run_id/key/step/value frame of their epochs.
        """
        with self._reading() as db:
            children = db.child_runs([parent_run_id], schema.KIND_CONFIRM)
            ids = children["run_id"].tolist()
            runs = pd.DataFrame({"run_id": ids, "status": children["status"].tolist()})
            tags = to_wide(db.key_values("tags", ids, [schema.CONFIRMS, schema.CONFIRM_SEED]), ids)
            runs["confirms"] = column(tags, schema.CONFIRMS).to_numpy()
            runs["seed"] = pd.to_numeric(column(tags, schema.CONFIRM_SEED), errors="coerce").to_numpy()
            histories = epoch_points(db.metric_histories(ids)) if ids else empty_histories()
            return runs, histories

    # -- trials --------------------------------------------------------------------------------------
    def trial(self, run_id: str) -> TrialData:
        """One trial with its histories, artifact list and logged diagnosis.

        Raises:
            RunNotFound: no active run ``run_id`` (never logged, or deleted in MLflow).
        """
        with self._reading() as db:
            run = self._run(db, run_id)
            tags = as_dict(db.key_values("tags", [run_id]))
            latest = as_dict(db.latest_metrics([run_id]))
            params = {k: parse_param(v) for k, v in as_dict(db.key_values("params", [run_id])).items()}
            histories = db.metric_histories([run_id])
            histories = epoch_points(histories)
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
                start_time=timestamp(run["start_time"]),
                end_time=timestamp(run["end_time"]),
                artifact_uri=run["artifact_uri"],
                params=params,
                tags=tags,
                metrics=latest,
                histories=histories,
                artifacts=artifacts,
                diagnosis=diagnosis,
            )

    def _run(self, db: ReadBackend, run_id: str) -> pd.Series:
        runs = db.runs_by_id([run_id])
        if runs.empty:
            raise RunNotFound(f"no run {run_id!r} in {self.display_uri}: never logged there, or deleted in MLflow.")
        return runs.iloc[0]

    # -- artifacts -----------------------------------------------------------------------------------
    def list_artifacts(self, run_id: str, artifact_uri: str | None = None, *, max_files: int = 500) -> list[str]:
        """Artifact paths of a run (files only); ``[]`` when the artifact location is unreadable."""
        try:
            with self._reading() as db:
                uri = artifact_uri or self._run(db, run_id)["artifact_uri"]
                return db.list_artifacts(run_id, uri, max_files)
        except Exception as e:  # an artifact store we cannot reach must not hide the run
            logger.info("cannot list artifacts of run %s: %s", run_id, e)
            return []

    def download_artifact(self, run_id: str, path: str, dst: str, artifact_uri: str | None = None) -> str:
        """A local copy of one artifact (under ``dst`` unless it already is a local file); its path."""
        with self._reading() as db:
            uri = artifact_uri or self._run(db, run_id)["artifact_uri"]
            return db.download_artifact(run_id, path, dst, uri)

    def local_artifact_path(self, path: str, artifact_uri: str | None) -> Path | None:
        """Where an artifact already lies on this machine (a local artifact folder), else ``None``."""
        local = self._backend.local_artifact_dir(artifact_uri)
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


# -- errors -----------------------------------------------------------------------------------------------
def _is_connection_error(error: Exception) -> bool:
    import sqlalchemy as sa

    if isinstance(error, sa.exc.OperationalError | sa.exc.InterfaceError):
        return True
    if type(error).__name__ == "MlflowException" and any(
        text in str(error) for text in ("Max retries exceeded", "ConnectionError", "Connection refused")
    ):  # MLflow wraps the requests error once its retries are spent
        return True
    try:
        import requests
    except ImportError:
        return False
    return isinstance(error, requests.ConnectionError)
