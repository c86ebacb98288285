"""Chaos with real processes: the store goes away in the middle of a sweep and comes back; the sweep goes
on meanwhile and every per-epoch point ends up stored exactly once, with no duplicate runs.

A real ``mlflow server`` (own process group, killed with SIGKILL, restarted on the same port over the same
SQLite file) and a real ``hpo run`` with real Ray. MLflow's HTTP retries are shortened (the client would
otherwise retry a dead server for minutes): the outage lasts longer than the client's retry window.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Callable, Iterator
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


def _sweep_through_outage(tmp_path: Path, uri: str, stop: Callable[[], None], start: Callable[[], None]) -> Any:
    """A real `hpo run --json` against ``uri``; the store is stopped once the first epoch is journaled and
    started again once the driver has reported the outage and a trial has ended without the store.
    Returns the run's JSON document (after `hpo sync` when the sweep ended before the store was back)."""
    name = f"outage-{uuid.uuid4().hex[:6]}"
    home = tmp_path / ".hpo"
    (tmp_path / "sweep.yaml").write_text(SWEEP.format(name=name, uri=uri, trials=TRIALS, epochs=EPOCHS))
    log = tmp_path / "hpo-run.stderr"
    with log.open("w") as err_file:
        sweep = subprocess.Popen([sys.executable, "-m", "hpo.cli", "run", "sweep.yaml", "--json"], cwd=tmp_path,
                                 env=_env(home), stdout=subprocess.PIPE, stderr=err_file, text=True)
    try:
        # the store goes away once the first epoch is journaled, mid-sweep
        wait_until(lambda: "metrics" in _journal_ops(home) or None, 240, process=sweep,
                   message="the sweep journals its first epoch")
        stop()
        ends_at_stop = _journal_ops(home).count("end")
        # ... and stays away past the client's retry window (a write failed: the driver says so) and until a
        # trial has ended without it
        wait_until(lambda: "the store does not take writes" in log.read_text(), 240,
                   message=lambda: f"the driver reports the outage; its stderr:\n{log.read_text()[-2000:]}")
        wait_until(lambda: _journal_ops(home).count("end") > ends_at_stop or sweep.poll() is not None, 240,
                   message="a trial ends while the store is down")
        start()
        out, _ = sweep.communicate(timeout=240)
    finally:
        if sweep.poll() is None:
            sweep.kill()
            sweep.wait()
    err = log.read_text()
    assert sweep.returncode == 0, err[-3000:]
    if "run `hpo sync`" in err:  # the sweep ended before the store was back: its journal waits for `hpo sync`
        synced = subprocess.run([sys.executable, "-m", "hpo.cli", "sync", name], cwd=tmp_path, env=_env(home),
                                capture_output=True, text=True, timeout=120)
        assert synced.returncode == 0, synced.stderr[-3000:]
    assert list((home / "journal").glob("*.jsonl")) == []  # everything reached the store
    return json.loads(out)


def _assert_every_point_once(client: Any, result: dict[str, Any]) -> None:
    """Every trial run once, every per-epoch point once, the sweep closed finished."""
    assert len(result["trials"]) == TRIALS
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


@pytest.mark.slow
def test_a_tracking_server_killed_mid_sweep_loses_no_point(tmp_path: Path, server: Server) -> None:
    result = _sweep_through_outage(tmp_path, server.url, server.kill, server.start)
    _assert_every_point_once(_client(server.url), result)


# -- PostgreSQL ----------------------------------------------------------------------------------------
def _postgres_bin() -> Path | None:
    """The server binaries of the installed PostgreSQL (Debian's layout), if any."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"))
    return found[-1].parent if found else None


class Postgres:
    """A PostgreSQL cluster of this test's own (initdb in a temporary folder, its own port), so stopping it
    disturbs no other test's database. Run as the ``postgres`` user when this process is root."""

    def __init__(self, folder: Path, bindir: Path) -> None:
        self.folder, self.bindir, self.port = folder, bindir, _free_port()
        self.uri = f"postgresql://postgres@127.0.0.1:{self.port}/hpo_outage"

    def _run(self, *args: str) -> None:
        as_postgres = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        done = subprocess.run([*as_postgres, *args], capture_output=True, text=True, timeout=120)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {done.stdout[-1000:]}{done.stderr[-1000:]}")

    def create(self) -> None:
        if os.geteuid() == 0:
            os.chown(self.folder, *_postgres_ids())
        self._run(str(self.bindir / "initdb"), "-D", str(self.folder / "data"), "-A", "trust", "-U", "postgres")
        self.start()
        self._run(str(self.bindir / "createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                  "hpo_outage")

    def start(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.folder / "data"), "-w", "-l", str(self.folder / "log"),
                  "-o", f"-p {self.port} -k {self.folder} -c listen_addresses=127.0.0.1", "start")

    def stop(self) -> None:
        self._run(str(self.bindir / "pg_ctl"), "-D", str(self.folder / "data"), "-w", "-m", "fast", "stop")


def _postgres_ids() -> tuple[int, int]:
    import pwd

    entry = pwd.getpwnam("postgres")
    return entry.pw_uid, entry.pw_gid


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    bindir = _postgres_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed here (no /usr/lib/postgresql/*/bin/pg_ctl)")
    # not under pytest's tmp folder: its parent is private to root, and the cluster runs as postgres
    folder = Path(tempfile.mkdtemp(prefix="hpo-outage-pg-"))
    request_cleanup = contextlib.ExitStack()
    request_cleanup.callback(shutil.rmtree, folder, ignore_errors=True)
    server = Postgres(folder, bindir)
    with request_cleanup:
        try:
            server.create()
        except (RuntimeError, KeyError, OSError) as e:
            pytest.skip(f"cannot start a PostgreSQL cluster of this test's own: {e}")
        try:
            yield server
        finally:
            with contextlib.suppress(RuntimeError):
                server.stop()


@pytest.mark.slow
def test_postgresql_restarted_mid_sweep_loses_no_point(postgres: Postgres, tmp_path: Path) -> None:
    """A real `hpo run` against PostgreSQL (a cluster of this test's own: the shared server on 5432 serves
    other tests) stopped once the first epoch is journaled and started again after a trial ended without
    it: the sweep goes on, and every run and per-epoch point is stored exactly once."""
    from tracker.mlflow_log import open_client

    result = _sweep_through_outage(tmp_path, postgres.uri, postgres.stop, postgres.start)
    _assert_every_point_once(open_client(postgres.uri), result)
