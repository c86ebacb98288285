"""A new SQLite store as a copy of an empty, already migrated one, instead of replaying every migration.

MLflow creates a SQLite store by running its alembic migrations one by one (69 of them in MLflow 3.x):
1-6 s on a busy 2-core machine, paid by every new ``$HPO_HOME`` (each test, each first ``hpo run`` in a
folder). The result of those migrations is the same file every time, so it is built once per installed
MLflow, by MLflow itself (``SqlAlchemyStore`` on an empty file), kept in a cache folder, and copied.

Why built at first use rather than shipped: the file must match the installed MLflow's schema head
exactly (MLflow refuses a store whose alembic revision differs), and a shipped file would go stale with
the first MLflow upgrade. The cache name carries MLflow's version and a digest of its migration file
names, so an upgrade builds a new template; MLflow still verifies the copy's revision when it opens it.

The template holds no experiment: MLflow creates its "Default" experiment (id 0, whose artifact location
depends on where the store lives) when it first opens the copy, as it does for a store it migrated.
"""

from __future__ import annotations

import hashlib
import os
import secrets
import shutil
import sqlite3
from contextlib import closing
from pathlib import Path

CACHE_ENV = "HPO_CACHE_DIR"  # where templates are kept; default $XDG_CACHE_HOME/hpo or ~/.cache/hpo

__all__ = ["CACHE_ENV", "cache_dir", "create_from_template", "template_path"]


def cache_dir() -> Path:
    """``$HPO_CACHE_DIR``, else ``$XDG_CACHE_HOME/hpo``, else ``~/.cache/hpo``."""
    explicit = os.environ.get(CACHE_ENV)
    if explicit:
        return Path(explicit).resolve()
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hpo"


def template_path() -> Path:
    """The template for the installed MLflow: its version and a digest of its migration scripts' names."""
    import mlflow
    from mlflow.store import db_migrations

    versions = Path(db_migrations.__file__).parent / "versions"
    names = sorted(p.name for p in versions.glob("*.py"))
    digest = hashlib.sha256("\n".join(names).encode()).hexdigest()[:12]
    return cache_dir() / f"mlflow-{mlflow.__version__}-{digest}.db"


def _build(template: Path) -> None:
    """Migrate an empty file with MLflow's own store, drop the experiment it creates, publish atomically."""
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    template.parent.mkdir(parents=True, exist_ok=True)
    building = _unique_beside(template, "building")
    try:
        store = SqlAlchemyStore(f"sqlite:///{building}", (template.parent / "unused-artifacts").as_uri())
        store.engine.dispose()
        with closing(sqlite3.connect(building, isolation_level=None)) as db:
            db.execute("DELETE FROM experiment_tags WHERE experiment_id = 0")
            db.execute("DELETE FROM experiments WHERE experiment_id = 0")
            db.execute("PRAGMA journal_mode=DELETE")  # one self-contained file, nothing in a -wal beside it
            db.execute("VACUUM")
        os.replace(building, template)  # readers see the whole file or none
    finally:
        building.unlink(missing_ok=True)


def _unique_beside(path: Path, what: str) -> Path:
    """A new name beside ``path`` (same file system, for the atomic publish); created by whoever writes
    it, so it gets the user's umask like a store MLflow creates (mkstemp's files are private)."""
    return path.with_name(f"{path.name}.{os.getpid()}-{secrets.token_hex(4)}.{what}")


def create_from_template(db: Path) -> bool:
    """Create the SQLite store ``db`` as a copy of the migrated template (built first if missing).

    Returns:
        True when this call created ``db``; False when it already existed (nothing is touched then).
    """
    if db.exists() and db.stat().st_size > 0:
        return False
    template = template_path()
    if not template.exists():
        _build(template)
    db.parent.mkdir(parents=True, exist_ok=True)
    copy = _unique_beside(db, "new")
    try:
        shutil.copyfile(template, copy)
        if db.exists() and db.stat().st_size == 0:  # sqlite3.connect() left an empty file: not a store yet
            db.unlink(missing_ok=True)
        try:
            os.link(copy, db)  # never over a store another process created meanwhile
        except FileExistsError:
            return False
        return True
    finally:
        copy.unlink(missing_ok=True)
