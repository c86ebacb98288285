"""``hpo ui`` starts the MLflow UI and the dashboard, and Ctrl-C stops both (exit 0, ports closed)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from waiting import free_port, http_body, port_open, wait_until

from hpo import ui

ROOT = Path(__file__).resolve().parents[2]


def test_ui_serves_both_and_stops_on_sigint(tmp_path: Path) -> None:
    mlflow_port, dashboard_port = free_port(), free_port()
    env = {**os.environ, "HPO_HOME": str(tmp_path / ".hpo"), "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "hpo.cli", "ui", "--mlflow-port", str(mlflow_port), "--port", str(dashboard_port)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        urls = (f"http://127.0.0.1:{mlflow_port}/health", f"http://127.0.0.1:{dashboard_port}/_stcore/health")

        def both_answer() -> bool:
            assert process.poll() is None, process.communicate()  # it exited: say what it printed
            return all(http_body(u) is not None for u in urls)

        wait_until(both_answer, 60, interval_s=0.5, message="hpo ui answers on both ports")
        process.send_signal(signal.SIGINT)
        _, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 0, err
    assert f"http://127.0.0.1:{mlflow_port}" in err and f"http://127.0.0.1:{dashboard_port}" in err
    assert not port_open(mlflow_port) and not port_open(dashboard_port)


def test_server_store_is_shown_not_started() -> None:
    service = ui.mlflow_ui("http://mlflow.example:5000/", "127.0.0.1", 5000, Path("/tmp"))
    assert service.command is None and service.url == "http://mlflow.example:5000"
    local = ui.mlflow_ui("sqlite:////tmp/x.db", "127.0.0.1", 5123, Path("/tmp/a"))
    assert local.command is not None and "--workers" in local.command and local.url == "http://127.0.0.1:5123"
    assert local.env == {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}


def test_child_that_exits_stops_the_rest(capsys: pytest.CaptureFixture[str]) -> None:
    marker = f"hpo-ui-test-{uuid.uuid4().hex}"
    sleeper = ui.Service("sleeper", "-", [sys.executable, "-c", f"import time; time.sleep(600)  # {marker}"])
    failing = ui.Service("failing", "-", [sys.executable, "-c", "raise SystemExit(3)"])
    assert ui.run([sleeper, failing], out=sys.stderr) == 1
    assert "failing exited with code 3" in capsys.readouterr().err
    left = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    assert left.stdout == "", "the sleeper outlived ui.run"
