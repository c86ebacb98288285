"""Fixtures for the dashboard tests: real MLflow SQLite stores built through MlflowClient.

``sweep_store`` is session-scoped (building it costs a few seconds of MLflow schema migration).
To test against a store written by a real ``hpo run``, provide another fixture returning a
``SweepStore`` with the same fields and point ``sweep_store`` at it.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from sweep_store import SweepStore, build_empty_store, build_store  # noqa: E402


@pytest.fixture(scope="session")
def sweep_store(tmp_path_factory: pytest.TempPathFactory) -> SweepStore:
    return build_store(tmp_path_factory.mktemp("sweep-store"))


@pytest.fixture(scope="session")
def empty_store_uri(tmp_path_factory: pytest.TempPathFactory) -> str:
    return build_empty_store(tmp_path_factory.mktemp("empty-store"))


@pytest.fixture
def store_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Clean tracking-URI environment for one test (restored afterwards by monkeypatch)."""
    for name in ("HPO_TRACKING_URI", "MLFLOW_TRACKING_URI", "HPO_MLFLOW_UI_URL"):
        monkeypatch.delenv(name, raising=False)
    yield monkeypatch
