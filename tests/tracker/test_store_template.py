"""A new SQLite store is a copy of an empty store MLflow migrated once; MLflow takes it as current."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest
from mlflow.store.db.utils import _get_latest_schema_revision
from mlflow.tracking import MlflowClient

from tracker.mlflow_log import open_client
from tracker.store_template import CACHE_ENV, create_from_template, template_path


def _schema(db: Path) -> list[tuple[str, str, list[str]]]:
    """Every table and index with its definition's clauses sorted: MLflow's own migrations write a table's
    CHECK constraints in a different order from one run to the next."""
    with closing(sqlite3.connect(db)) as conn:
        rows = conn.execute("SELECT type, name, sql FROM sqlite_master ORDER BY type, name").fetchall()
    return [(kind, name, sorted(line.strip().rstrip(",") for line in (sql or "").splitlines()))
            for kind, name, sql in rows]


def _revision(db: Path) -> str:
    with closing(sqlite3.connect(db)) as conn:
        return str(conn.execute("SELECT version_num FROM alembic_version").fetchone()[0])


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One template cache for the module: MLflow's migrations run once, as on a user's machine."""
    folder = tmp_path_factory.mktemp("template_cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(folder))
        yield folder


def test_a_new_store_is_the_migrated_schema_and_mlflow_reads_and_writes_it(tmp_path: Path, cache: Path) -> None:
    store = tmp_path / "a" / "mlflow.db"
    client = open_client(f"sqlite:///{store}")
    template = template_path()
    assert template.parent == cache and template.is_file()
    import mlflow

    assert mlflow.__version__ in template.name  # a new MLflow builds its own template
    assert _revision(store) == _get_latest_schema_revision()  # MLflow's head: it opens the file as current
    default = client.get_experiment("0")  # made by MLflow when it first opened the copy, as for its own stores
    assert default.name == "Default" and str(cache) not in default.artifact_location
    experiment = client.create_experiment("e")
    run = client.create_run(experiment).info.run_id
    client.log_metric(run, "val_loss", 0.25, step=3)
    reopened = MlflowClient(f"sqlite:///{store}")  # a second process's view: the same rows
    assert [(m.step, m.value) for m in reopened.get_metric_history(run, "val_loss")] == [(3, 0.25)]
    with closing(sqlite3.connect(store)) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # the dashboard reads while we write

    # the same schema, table for table and index for index, as a store MLflow migrates itself
    # (the fallback when no template can be kept: the cache "folder" is a file here)
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("x", encoding="utf-8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(CACHE_ENV, str(blocked))
        migrated = tmp_path / "b" / "mlflow.db"
        open_client(f"sqlite:///{migrated}")
    assert _schema(store) == _schema(migrated)
    assert MlflowClient(f"sqlite:///{migrated}").get_experiment("0").artifact_location == default.artifact_location
    assert _revision(migrated) == _revision(store)


def test_an_existing_store_is_never_replaced(tmp_path: Path, cache: Path) -> None:
    store = tmp_path / "mlflow.db"
    assert create_from_template(store) is True
    client = MlflowClient(f"sqlite:///{store}")
    kept = client.create_experiment("kept")
    assert create_from_template(store) is False  # a second driver, a resume: the file stays as it is
    assert client.get_experiment(kept).name == "kept"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith("mlflow.db.")]  # no copy left beside it
