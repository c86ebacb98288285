"""Chaos with real processes: the store goes away in the middle of a sweep and comes back; the sweep goes
on meanwhile and every per-epoch point ends up stored exactly once, with no duplicate runs.

A real ``mlflow server`` (own process group, killed with SIGKILL, restarted on the same port over the same
SQLite file) and a real ``hpo run`` with real Ray. MLflow's HTTP retries are shortened (the client would
otherwise retry a dead server for minutes): the outage lasts longer than the client's retry window.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from waiting import http_body, wait_until

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 3
TRIALS = 4
SWEEP = """\
name: {name}
method: random
metric: {{name: val_accuracy, goal: maximize}}
budget: {{trials: {trials}, max_concurrent: 2}}
seed: 0
trainer: {{task: digits, epochs: {epochs}, options: {{hidden: 16, train_fraction: 0.3}}}}
parameters:
  lr: {{distribution: log_uniform, min: 1.0e-3, max: 1.0e-1}}
tracking_uri: {uri}
"""
SHORT_RETRIES = {  # MLflow's HTTP client gives up on a dead server in seconds instead of minutes
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "0",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "3",
}


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "HPO_HOME")}
    env.update(HPO_HOME=str(home), PYTHONPATH=str(ROOT), MLFLOW_SERVER_ENABLE_JOB_EXECUTION="false", **SHORT_RETRIES)
    return env


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """An ``mlflow server`` over one SQLite file and artifact folder that can be killed and started again."""

    def __init__(self, folder: Path) -> None:
        self.folder, self.port = folder, _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        log = self.folder / "server.log"
        with log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "mlflow", "server", "--backend-store-uri",
                 f"sqlite:///{self.folder / 'mlflow.db'}", "--artifacts-destination", str(self.folder / "mlartifacts"),
                 "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
                cwd=self.folder, env=_env(self.folder / "home"), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: the uvicorn worker dies with it
            )
        wait_until(lambda: http_body(self.url + "/health"), 120, interval_s=0.3, process=self.process,
                   message=lambda: f"mlflow server answers /health; its log:\n{log.read_text()[-2000:]}")

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=30)


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    folder = tmp_path / "server"
    folder.mkdir()
    server = Server(folder)
    server.start()
    try:
        yield server
    finally:
        server.kill()


def _journal_ops(home: Path) -> list[str]:
    """The ops of every complete line in the sweep's journals (what the driver has written so far)."""
    ops = []
    for path in sorted((home / "journal").glob("*.jsonl")):
        for line in path.read_bytes().splitlines(keepends=True):
            if line.endswith(b"\n"):
                ops.append(json.loads(line)["op"])
    return ops


def _client(url: str) -> Any:
    os.environ.update(SHORT_RETRIES)  # this process reads the store too: fail fast if it is down
    from mlflow.tracking import MlflowClient

    return MlflowClient(url)


@pytest.mark.slow
def test_a_tracking_server_killed_mid_sweep_loses_no_point(tmp_path: Path, server: Server) -> None:
    name = f"outage-{uuid.uuid4().hex[:6]}"
    home = tmp_path / ".hpo"
    (tmp_path / "sweep.yaml").write_text(SWEEP.format(name=name, uri=server.url, trials=TRIALS, epochs=EPOCHS))
    sweep = subprocess.Popen([sys.executable, "-m", "hpo.cli", "run", "sweep.yaml", "--json"], cwd=tmp_path,
                             env=_env(home), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        # the store goes away once the first epoch is journaled, mid-sweep
        wait_until(lambda: "metrics" in _journal_ops(home) or None, 240, process=sweep,
                   message="the sweep journals its first epoch")
        server.kill()
        ends_at_kill = _journal_ops(home).count("end")
        # ... and stays away, far past the client's retry window, until trials have ended without it
        wait_until(lambda: _journal_ops(home).count("end") > ends_at_kill or sweep.poll() is not None, 240,
                   message="a trial ends while the store is down")
        server.start()
        out, err = sweep.communicate(timeout=240)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
    assert sweep.returncode == 0, err[-3000:]
    assert "does not take writes" in err  # the driver said the store was down and kept the results
    if "run `hpo sync`" in err:  # the sweep ended before the store was back: its journal waits for `hpo sync`
        synced = subprocess.run([sys.executable, "-m", "hpo.cli", "sync", name], cwd=tmp_path, env=_env(home),
                                capture_output=True, text=True, timeout=120)
        assert synced.returncode == 0, synced.stderr[-3000:]
    assert list((home / "journal").glob("*.jsonl")) == []  # everything reached the store

    result = json.loads(out)
    assert len(result["trials"]) == TRIALS
    client = _client(server.url)
    parent = result["parent_run_id"]
    experiment_id = client.get_run(parent).info.experiment_id
    children = client.search_runs([experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'")
    assert sorted(r.info.run_id for r in children) == sorted(t["run_id"] for t in result["trials"])  # no duplicates
    assert sorted(int(r.data.tags["hpo.trial_number"]) for r in children) == list(range(TRIALS))
    epochs_of = {t["run_id"]: t["epochs"] for t in result["trials"]}
    for run in children:
        assert run.info.status == "FINISHED", run.info
        epochs = epochs_of[run.info.run_id]
        assert epochs == EPOCHS and run.data.metrics["epochs_run"] == EPOCHS
        for key in ("train_loss", "val_loss", "val_accuracy"):
            steps = sorted(m.step for m in client.get_metric_history(run.info.run_id, key))
            assert steps == list(range(1, epochs + 1)), (run.info.run_id, key, steps)  # every epoch, once
    parent_run = client.get_run(parent)
    assert parent_run.info.status == "FINISHED" and parent_run.data.tags["hpo.state"] == "finished"
    assert parent_run.data.tags["hpo.best_run_id"] in {r.info.run_id for r in children}
