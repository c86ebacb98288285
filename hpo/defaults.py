"""The one place that decides defaults: where results go, ports, concurrency.

The tracking URI and the embedded home folder are decided in ``tracker.uri`` (the tracker's readers and
writer need them and must not import ``hpo``); this module re-exports them so the rest of ``hpo`` asks here.
"""

from __future__ import annotations

from pathlib import Path

from tracker.uri import HOME_ENV, home
from tracker.uri import resolve_tracking_uri as tracking_uri
from trainers.tasks import TASKS

__all__ = [
    "TASKS", "HOME_ENV", "home", "tracking_uri", "artifact_root", "ray_storage", "MLFLOW_UI_PORT", "DASHBOARD_PORT",
]  # fmt: skip

MLFLOW_UI_PORT = 5000
DASHBOARD_PORT = 8501
HOST = "127.0.0.1"


def artifact_root() -> Path:
    """Where the embedded store keeps artifacts."""
    return home() / "artifacts"


def ray_storage() -> Path:
    """Ray Tune's storage path (results, checkpoints); must be absolute."""
    return home() / "ray"
