"""``hpo run`` against a PostgreSQL store and through a real ``mlflow server``, read back by ``hpo best``.

Needs PostgreSQL on 127.0.0.1:5432 (user postgres, database test; `.ci/run` installs and starts it when missing);
the PostgreSQL test is skipped, saying so, when nothing answers there.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import pytest
from waiting import http_body, wait_until

ROOT = Path(__file__).resolve().parents[2]
POSTGRES_URI = "postgresql://postgres@127.0.0.1:5432/test"
SWEEP = """\
name: {name}
method: random
metric: {{name: val_accuracy, goal: maximize}}
budget: {{trials: 2, max_concurrent: 2}}
seed: 0
trainer: {{task: digits, epochs: 2, options: {{hidden: 16}}}}
parameters:
  lr: {{distribution: log_uniform, min: 1.0e-3, max: 1.0e-1}}
  batch_size: {{values: [32, 64]}}
tracking_uri: {uri}
"""


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env.update(HPO_HOME=str(tmp_path / ".hpo"), PYTHONPATH=str(ROOT))
    return env


def _hpo(tmp_path: Path, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "hpo.cli", *args], cwd=tmp_path, env=_env(tmp_path),
                          capture_output=True, text=True, timeout=timeout_s)


def _sweep_and_read_back(tmp_path: Path, uri: str) -> None:
    name = f"deploy-{uuid.uuid4().hex[:8]}"  # a shared database keeps every earlier test's experiments
    (tmp_path / "sweep.yaml").write_text(SWEEP.format(name=name, uri=uri))
    run = _hpo(tmp_path, "run", "sweep.yaml")
    assert run.returncode == 0, run.stderr[-3000:]
    best = _hpo(tmp_path, "best", name, "--json", "--tracking-uri", uri, timeout_s=60)
    assert best.returncode == 0, best.stderr[-3000:]
    doc = json.loads(best.stdout)
    assert doc["sweep"] == name and doc["state"] == "finished"
    assert doc["metric"] == {"name": "val_accuracy", "goal": "maximize"}
    assert len(doc["top"]) == 2
    for trial in doc["top"]:
        assert trial["status"] == "FINISHED" and trial["epochs"] == 2
        assert 0.0 <= trial["metric"] <= 1.0
        assert {"lr", "batch_size"} <= set(trial["params"]) and trial["params"]["hidden"] == 16
    assert doc["top"][0]["metric"] >= doc["top"][1]["metric"]
    assert not (tmp_path / ".hpo" / "mlflow.db").exists()  # nothing fell back to the local store


def _postgres_up() -> bool:
    import psycopg

    try:
        psycopg.connect(POSTGRES_URI, connect_timeout=3).close()
        return True
    except psycopg.OperationalError:
        return False


@pytest.mark.slow
def test_sweep_on_postgresql(tmp_path: Path) -> None:
    if not _postgres_up():
        pytest.skip(f"no PostgreSQL answers at {POSTGRES_URI} (start it: pg_ctlcluster <version> main start)")
    _sweep_and_read_back(tmp_path, POSTGRES_URI)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server(NamedTuple):
    url: str
    process: subprocess.Popen[bytes]


def _stop(server: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(server.pid, 15)  # its own session: the uvicorn worker goes too
        server.wait(timeout=20)
    except ProcessLookupError:
        server.wait()
    except subprocess.TimeoutExpired:
        os.killpg(server.pid, 9)
        server.wait()


@pytest.fixture
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A real ``mlflow server`` over a temporary SQLite store, for one test (the server-gone test stops its
    own, so no test depends on which ran first); stopped (and waited for) afterwards."""
    tmp_path = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    folder = tmp_path / "server"
    folder.mkdir()
    env = {**_env(tmp_path), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    log = folder / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", f"sqlite:///{folder / 'mlflow.db'}",
             "--artifacts-destination", str(folder / "mlartifacts"),
             "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
            cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until(lambda: http_body(url + "/health"), 60, interval_s=0.3, process=server,
                   message=lambda: f"mlflow server answers /health; its log:\n{log.read_text()[-2000:]}")
        yield Server(url, server)
    finally:
        if server.poll() is None:
            _stop(server)


@pytest.mark.slow
def test_sweep_through_mlflow_server(tmp_path: Path, mlflow_server: Server) -> None:
    _sweep_and_read_back(tmp_path, mlflow_server.url)


def test_a_server_that_goes_away_is_said_at_the_next_read(mlflow_server: Server,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """The dashboard keeps one Store; once its server is gone a read says so instead of MLflow retrying
    for minutes and ending in a traceback."""
    from tracker import _mlflow_reads
    from tracker.queries import Store, StoreUnavailable

    monkeypatch.setattr(_mlflow_reads, "PROBE_EVERY_S", 0.0)
    store = Store(mlflow_server.url)
    assert "sweep" in store.list_sweeps().columns  # the server answers
    _stop(mlflow_server.process)
    gone = f"cannot reach the MLflow server {mlflow_server.url}: it does not answer"
    with pytest.raises(StoreUnavailable, match=gone):
        store.list_sweeps()


def test_unreachable_tracking_server_exits_2_before_any_trial(tmp_path: Path) -> None:
    (tmp_path / "sweep.yaml").write_text(SWEEP.format(name="unreachable", uri="http://127.0.0.1:1"))
    run = _hpo(tmp_path, "run", "sweep.yaml", timeout_s=60)  # MLflow's own retries would take minutes
    assert run.returncode == 2, run.stderr[-3000:]
    assert "cannot reach the MLflow server http://127.0.0.1:1" in run.stderr
    assert "MLFLOW_TRACKING_URI" in run.stderr  # the fix
    assert not (tmp_path / ".hpo").exists()  # no Ray storage, no local store: no trial started
