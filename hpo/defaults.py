"""The one place that decides defaults: where results go, ports, concurrency."""

from __future__ import annotations

import os
from pathlib import Path

from trainers.tasks import TASKS

__all__ = ["TASKS", "home", "tracking_uri", "artifact_root", "ray_storage", "MLFLOW_UI_PORT", "DASHBOARD_PORT"]

HOME_ENV = "HPO_HOME"  # overrides ./.hpo
MLFLOW_UI_PORT = 5000
DASHBOARD_PORT = 8501
HOST = "127.0.0.1"


def home() -> Path:
    """Folder of the embedded store: ``$HPO_HOME`` or ``./.hpo`` (absolute)."""
    return Path(os.environ.get(HOME_ENV) or ".hpo").resolve()


def tracking_uri(explicit: str | None = None) -> str:
    """The MLflow store to use: ``explicit``, else ``$MLFLOW_TRACKING_URI``, else SQLite in ``home()``."""
    uri = explicit or os.environ.get("MLFLOW_TRACKING_URI")
    return uri or f"sqlite:///{home() / 'mlflow.db'}"


def artifact_root() -> Path:
    """Where the embedded store keeps artifacts."""
    return home() / "artifacts"


def ray_storage() -> Path:
    """Ray Tune's storage path (results, checkpoints); must be absolute."""
    return home() / "ray"
