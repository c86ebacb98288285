"""The same bulk reads as :mod:`tracker._sql_reads`, through an MLflow tracking server's REST API.

Used for ``http(s)://`` stores (and any other URI MlflowClient understands but we cannot open
with SQLAlchemy). Runs come from ``search_runs`` (tags, params and latest metrics in one paged
call); metric histories from the server's bulk endpoint, which answers 100 runs per request,
instead of ``get_metric_history`` per run and key.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar, cast

import pandas as pd

from tracker import schema
from tracker._backend import RUN_COLUMNS, KeyValueTable
from tracker.schema import RunKind
from tracker.uri import is_server_uri, probe_server, redact

logger = logging.getLogger(__name__)

_BULK_ENDPOINT = "/ajax-api/2.0/mlflow/metrics/get-history-bulk"
_BULK_MAX_RUNS = 100  # the server refuses more run ids per bulk request
_BULK_MAX_RESULTS = 25_000
_PAGE = 10_000
PROBE_EVERY_S = 5.0
PROBE_TIMEOUT_S = 3.0  # a page waits at most this long to learn that the server went away


_Read = TypeVar("_Read", bound=Callable[..., Any])


def _in_session(method: _Read) -> _Read:
    """A read called outside :meth:`ClientReads.session` gets one of its own: it keeps nothing afterwards."""

    @functools.wraps(method)
    def read(self: ClientReads, *args: Any, **kwargs: Any) -> Any:
        with self.session():
            return method(self, *args, **kwargs)

    return cast(_Read, read)


class ClientReads:
    """:class:`tracker._backend.ReadBackend` through ``MlflowClient`` (an MLflow tracking server).

    The runs a search returned are kept for the rest of one :meth:`session` (their tags, params and
    latest metrics came with them), per thread, and dropped when it ends: a later read fetches afresh,
    so no answer depends on what was read before.

    Raises:
        StoreUnavailable: the server does not answer ``/health``.
    """

    def __init__(self, tracking_uri: str) -> None:
        from mlflow.tracking import MlflowClient  # heavy import, only for server stores

        self.tracking_uri = tracking_uri
        self.display_uri = redact(tracking_uri)
        self._server = is_server_uri(tracking_uri)
        if self._server:
            probe_server(tracking_uri, PROBE_TIMEOUT_S)
        self._probed = time.monotonic()
        self.client = MlflowClient(tracking_uri)
        self._local = threading.local()  # the dashboard shares one Store between its sessions' threads

    @contextlib.contextmanager
    def session(self) -> Iterator[None]:
        depth = getattr(self._local, "depth", 0)
        if depth == 0:
            self._local.runs, self._local.experiments = {}, {}
        self._local.depth = depth + 1
        try:
            yield
        finally:
            self._local.depth = depth
            if depth == 0:
                self._local.runs, self._local.experiments = {}, {}

    @property
    def _runs(self) -> dict[str, Any]:
        return self._local.runs  # type: ignore[no-any-return]  # set by session(), which every read enters

    @property
    def _experiments(self) -> dict[str, str]:
        return self._local.experiments  # type: ignore[no-any-return]

    def check(self) -> None:
        """Fail in milliseconds when the server went away, not after MLflow's minutes of retries.

        Raises:
            StoreUnavailable: the server does not answer ``/health`` (checked at most every few seconds).
        """
        if self._server and time.monotonic() - self._probed >= PROBE_EVERY_S:
            probe_server(self.tracking_uri, PROBE_TIMEOUT_S)
            self._probed = time.monotonic()

    # -- runs ----------------------------------------------------------------------------------------
    def _experiment_ids(self) -> list[str]:
        experiments = self.client.search_experiments(max_results=50_000)
        self._experiments.update({e.experiment_id: e.name for e in experiments})
        return [e.experiment_id for e in experiments]

    def _search(self, filter_string: str, experiment_ids: list[str] | None = None) -> list[Any]:
        ids = experiment_ids if experiment_ids is not None else self._experiment_ids()
        runs: list[Any] = []
        # search_runs takes at most 100 experiments per call
        for start in range(0, len(ids), 100):
            token = None
            while True:
                page = self.client.search_runs(
                    ids[start : start + 100], filter_string, max_results=_PAGE, page_token=token
                )
                runs.extend(page)
                token = page.token
                if not token:
                    break
        for run in runs:
            self._runs[run.info.run_id] = run
        return runs

    def _of_kind(self, filter_string: str, kind: RunKind, experiment_ids: list[str] | None = None) -> list[Any]:
        """Runs of ``kind`` matching ``filter_string``: by ``hpo.run_kind``, or schema 1's ``hpo.role``."""
        found: dict[str, Any] = {}
        for tag in (schema.RUN_KIND, schema.LEGACY_ROLE):
            query = " and ".join(f for f in (filter_string, f"tags.`{tag}` = '{kind}'") if f)
            found.update((r.info.run_id, r) for r in self._search(query, experiment_ids))
        return [r for r in found.values() if schema.run_kind(r.data.tags) == kind]

    def _ensure(self, run_ids: Sequence[str]) -> None:
        """Fetch the runs this session has not seen (a parent read for its tags, say)."""
        missing = [r for r in run_ids if r not in self._runs]
        if missing:
            self.runs_by_id(missing)

    def _frame(self, runs: Iterable[Any], with_parent: bool = False) -> pd.DataFrame:
        rows = []
        for run in runs:
            info = run.info
            if info.experiment_id not in self._experiments:
                self._experiments[info.experiment_id] = self.client.get_experiment(info.experiment_id).name
            row = [
                info.run_id,
                info.run_name,
                info.status,
                info.start_time,
                info.end_time,
                info.artifact_uri,
                str(info.experiment_id),
                self._experiments[info.experiment_id],
            ]
            if with_parent:
                row.append(run.data.tags.get(schema.PARENT_RUN_ID))
            rows.append(row)
        return pd.DataFrame(rows, columns=[*RUN_COLUMNS, "parent_id"] if with_parent else RUN_COLUMNS)

    @_in_session
    def sweep_runs(self) -> pd.DataFrame:
        return self._frame(self._of_kind("", schema.KIND_SWEEP))

    @_in_session
    def runs_by_id(self, run_ids: Sequence[str]) -> pd.DataFrame:
        from mlflow.exceptions import MlflowException

        runs = []
        for run_id in run_ids:
            try:
                run = self.client.get_run(run_id)
            except MlflowException:
                continue  # missing: the caller reports it
            if run.info.lifecycle_stage == "active":
                self._runs[run_id] = run
                runs.append(run)
        return self._frame(runs)

    @_in_session
    def child_runs(self, parent_ids: Sequence[str], kind: RunKind) -> pd.DataFrame:
        wanted = set(parent_ids)
        self._ensure(parent_ids)
        experiment_ids = sorted({self._runs[p].info.experiment_id for p in parent_ids if p in self._runs})
        if len(parent_ids) == 1:
            found = self._search(f"tags.`{schema.PARENT_RUN_ID}` = '{parent_ids[0]}'", experiment_ids or None)
            found = [r for r in found if schema.run_kind(r.data.tags) == kind]
        else:
            found = self._of_kind("", kind, experiment_ids or None)
        return self._frame([r for r in found if r.data.tags.get(schema.PARENT_RUN_ID) in wanted], True)

    # -- tags, params, metrics --------------------------------------------------------------------
    @_in_session
    def key_values(
        self, table: KeyValueTable, run_ids: Sequence[str], keys: Sequence[str] | None = None
    ) -> pd.DataFrame:
        self._ensure(run_ids)
        rows: list[tuple[Any, ...]] = []
        for run_id in run_ids:
            run = self._runs.get(run_id)
            if run is None:
                continue
            values = run.data.tags if table == "tags" else run.data.params
            rows.extend((run_id, k, v) for k, v in values.items() if keys is None or k in keys)
        return pd.DataFrame(rows, columns=["run_id", "key", "value"])

    @_in_session
    def latest_metrics(self, run_ids: Sequence[str], keys: Sequence[str] | None = None) -> pd.DataFrame:
        self._ensure(run_ids)
        rows: list[tuple[Any, ...]] = []
        for run_id in run_ids:
            run = self._runs.get(run_id)
            if run is None:
                continue
            rows.extend((run_id, k, float(v), None) for k, v in run.data.metrics.items() if keys is None or k in keys)
        return pd.DataFrame(rows, columns=["run_id", "key", "value", "step"])

    @_in_session
    def metric_histories(self, run_ids: Sequence[str], keys: Sequence[str] | None = None) -> pd.DataFrame:
        if keys is None:
            self._ensure(run_ids)
            keys = sorted({k for r in run_ids if r in self._runs for k in self._runs[r].data.metrics})
        rows: list[tuple[str, str, int, float]] = []
        for key in keys:
            for start in range(0, len(run_ids), _BULK_MAX_RUNS):
                rows.extend(self._history_bulk(list(run_ids[start : start + _BULK_MAX_RUNS]), key))
        frame = pd.DataFrame(rows, columns=["run_id", "key", "step", "value"])
        frame = frame.drop_duplicates(["run_id", "key", "step"], keep="last")
        frame = frame.sort_values(["run_id", "key", "step"], kind="stable").reset_index(drop=True)
        return frame.astype({"run_id": "category", "key": "category", "step": "int64", "value": "float64"})

    def _history_bulk(self, run_ids: list[str], key: str) -> list[tuple[str, str, int, float]]:
        try:
            return _bulk_request(self.tracking_uri, run_ids, key)
        except Exception as e:  # an older server, a proxy in front: fall back to per-run calls
            logger.debug("bulk metric history unavailable (%s); reading per run", e)
        rows: list[tuple[Any, ...]] = []
        for run_id in run_ids:
            for m in self.client.get_metric_history(run_id, key):
                rows.append((run_id, key, int(m.step), float(m.value)))
        return rows

    # -- artifacts: through the server (it may proxy them) -------------------------------------------
    @_in_session
    def list_artifacts(self, run_id: str, artifact_uri: str, max_files: int) -> list[str]:
        files: list[str] = []
        todo: list[str | None] = [None]
        while todo and len(files) < max_files:
            for entry in self.client.list_artifacts(run_id, todo.pop(0)):
                (todo.append(entry.path) if entry.is_dir else files.append(entry.path))
        return sorted(files)

    @_in_session
    def download_artifact(self, run_id: str, path: str, dst: str, artifact_uri: str) -> str:
        return str(self.client.download_artifacts(run_id, path, dst))

    def local_artifact_dir(self, artifact_uri: str | None) -> Path | None:
        return None  # the server's artifact location is the server's, even when it names a local path


def _bulk_request(uri: str, run_ids: list[str], key: str) -> list[tuple[str, str, int, float]]:
    if not uri.startswith(("http://", "https://")):
        raise ValueError("not a server URI")
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    params: list[tuple[str, str | int]] = [("run_id", r) for r in run_ids]
    params += [("metric_key", key), ("max_results", _BULK_MAX_RESULTS)]
    response = http_request(get_default_host_creds(uri), _BULK_ENDPOINT, "GET", params=params, max_retries=0)
    response.raise_for_status()
    return [
        (m["run_id"], m["key"], int(m.get("step", 0)), float(m["value"])) for m in response.json().get("metrics", [])
    ]
