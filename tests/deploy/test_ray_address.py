"""``ray.address`` / ``--ray-address``: an unreachable cluster is refused before anything is created."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpo.cluster import check_ray_address, split_host_port
from hpo.errors import ClusterError, ConfigError
from hpo.loading import validate

HPO = [sys.executable, "-m", "hpo.cli"]
SWEEP = """\
name: ray-address
method: random
metric: {name: val_accuracy, goal: maximize}
budget: {trials: 1}
trainer: {task: digits, epochs: 1, options: {hidden: 16}}
parameters:
  lr: {distribution: log_uniform, min: 1.0e-3, max: 1.0e-1}
"""


def _hpo_run(tmp_path: Path, sweep: str, *args: str) -> subprocess.CompletedProcess[str]:
    """``hpo run`` of ``sweep``; the timeout catches a hang (ray.init waits over 2 minutes on a dead address)."""
    (tmp_path / "sweep.yaml").write_text(sweep)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env["HPO_HOME"] = str(tmp_path / ".hpo")
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return subprocess.run([*HPO, "run", "sweep.yaml", *args], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize("address", ["127.0.0.1:1", "ray://127.0.0.1:1"])
def test_unreachable_flag_address_exits_2_before_any_run(tmp_path: Path, address: str) -> None:
    result = _hpo_run(tmp_path, SWEEP, "--ray-address", address)
    assert result.returncode == 2, result.stderr
    assert f"cannot reach the Ray cluster at {address}" in result.stderr
    assert "ray start --head" in result.stderr  # the fix
    assert not (tmp_path / ".hpo" / "mlflow.db").exists()


def test_unreachable_address_in_sweep_file_exits_2(tmp_path: Path) -> None:
    result = _hpo_run(tmp_path, SWEEP + "ray: {address: 127.0.0.1:1}\n")
    assert result.returncode == 2, result.stderr
    assert "127.0.0.1:1" in result.stderr
    assert not (tmp_path / ".hpo").exists()


def test_flag_overrides_sweep_file(tmp_path: Path) -> None:
    result = _hpo_run(tmp_path, SWEEP + "ray: {address: 127.0.0.1:2}\n", "--ray-address", "127.0.0.1:1")
    assert result.returncode == 2
    assert "at 127.0.0.1:1:" in result.stderr and "127.0.0.1:2" not in result.stderr


def test_malformed_address_is_a_config_error() -> None:
    import yaml

    raw = yaml.safe_load(SWEEP)
    with pytest.raises(ConfigError, match=r"ray.address: must be auto, HOST:PORT or ray://HOST:PORT, got 'http://x:1'"):
        validate({**raw, "ray": {"address": "http://x:1"}})
    with pytest.raises(ConfigError, match=r"unknown key 'adress' \(did you mean 'address'\?\)"):
        validate({**raw, "ray": {"adress": "auto"}})
    assert validate({**raw, "ray": {"address": "ray://head:10001"}}).ray.address == "ray://head:10001"
    assert validate(raw).ray.address is None


def test_check_ray_address() -> None:
    assert check_ray_address(None) is None
    with pytest.raises(ClusterError, match=r"cannot reach the Ray cluster at 127.0.0.1:1: "):
        check_ray_address("127.0.0.1:1", timeout_s=1)
    with pytest.raises(ClusterError, match=r"HOST:PORT or ray://HOST:PORT, got 'nohost'"):
        split_host_port("nohost")
    assert split_host_port("ray-head:6379") == ("ray-head", 6379)


def test_port_that_answers_but_is_not_ray(tmp_path: Path) -> None:
    import http.server
    import threading

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), http.server.BaseHTTPRequestHandler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        address = f"127.0.0.1:{server.server_address[1]}"
        # our GCS probe says this (in about a second); ray.init would retry for 25 to 40 s first
        with pytest.raises(ClusterError, match=rf"at {address}: the port answers but not as a Ray head"):
            check_ray_address(address)
    finally:
        server.shutdown()
        server.server_close()
