"""The read interface every tracking-store backend implements, as optuna's ``BaseStorage`` declares its storages.

Two backends serve it: :class:`tracker._sql_reads.SqlReads` (SQLAlchemy on MLflow's own tables: SQLite,
PostgreSQL, MySQL) and :class:`tracker._mlflow_reads.ClientReads` (an MLflow tracking server's REST API).
:class:`tracker.queries.Store` calls these methods and shapes their long frames; it never asks which
backend it holds, except for where artifacts lie.

Every frame has the columns named below, whatever the backend. Results must not depend on call order:
a backend may reuse what it fetched only inside one :meth:`ReadBackend.session`.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import pandas as pd

from tracker.schema import RunKind

KeyValueTable = Literal["tags", "params"]

# Columns of every runs frame: runs_by_id, sweep_runs, and child_runs (which adds parent_id).
RUN_COLUMNS = ["run_id", "name", "status", "start_time", "end_time", "artifact_uri", "experiment_id", "experiment"]


@runtime_checkable
class ReadBackend(Protocol):
    """Bulk reads of one tracking store; active runs only (MLflow's trash is left out, as in its UI).

    Raises (every method):
        StoreUnavailable: the store cannot be reached or went away.
    """

    @property
    def display_uri(self) -> str:
        """The store's URI without any password, for messages."""
        ...

    def session(self) -> AbstractContextManager[None]:
        """One consistent read (a page render, one CLI command): caches live inside it only."""
        ...

    def check(self) -> None:
        """Fail fast when the store went away (a server's ``/health``); a no-op for databases."""
        ...

    def sweep_runs(self) -> pd.DataFrame:
        """Every run of kind ``sweep`` (``hpo.run_kind``, or schema 1's ``hpo.role``): ``RUN_COLUMNS``."""
        ...

    def runs_by_id(self, run_ids: Sequence[str]) -> pd.DataFrame:
        """The active runs among ``run_ids`` (missing or deleted ones are absent): ``RUN_COLUMNS``."""
        ...

    def child_runs(self, parent_ids: Sequence[str], kind: RunKind) -> pd.DataFrame:
        """Children of ``parent_ids`` (``mlflow.parentRunId``) of run kind ``kind``: ``RUN_COLUMNS`` + parent_id."""
        ...

    def key_values(
        self, table: KeyValueTable, run_ids: Sequence[str], keys: Sequence[str] | None = None
    ) -> pd.DataFrame:
        """Long frame ``run_id, key, value`` of the runs' tags or params (only ``keys`` when given)."""
        ...

    def latest_metrics(self, run_ids: Sequence[str], keys: Sequence[str] | None = None) -> pd.DataFrame:
        """Long frame ``run_id, key, value, step`` of each run's last value per metric (step may be None)."""
        ...

    def metric_histories(self, run_ids: Sequence[str], keys: Sequence[str] | None = None) -> pd.DataFrame:
        """Long frame ``run_id, key, step, value`` of every logged point; a step logged twice keeps its last write."""
        ...

    # -- artifacts -------------------------------------------------------------------------------------
    def list_artifacts(self, run_id: str, artifact_uri: str, max_files: int) -> list[str]:
        """Artifact file paths of a run (at most ``max_files``), relative to its artifact root."""
        ...

    def download_artifact(self, run_id: str, path: str, dst: str, artifact_uri: str) -> str:
        """A local copy of one artifact (under ``dst`` unless it already is a local file); its path."""
        ...

    def local_artifact_dir(self, artifact_uri: str | None) -> Path | None:
        """The run's artifact folder when it lies on this machine, else ``None``."""
        ...
