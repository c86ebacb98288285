"""tracker.uri: the one tracking-URI resolver (writer, readers, CLI, dashboard) and the one health probe."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator

import pytest

from hpo import defaults
from tracker.errors import StoreUnavailable
from tracker.uri import probe_server, resolve_tracking_uri


@pytest.fixture
def clean(monkeypatch, tmp_path):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("HPO_HOME", raising=False)
    monkeypatch.chdir(tmp_path)
    return monkeypatch


def test_default_is_the_embedded_store_in_hpo_home(clean, tmp_path):
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path / '.hpo' / 'mlflow.db'}"
    clean.setenv("HPO_HOME", "elsewhere")  # relative: resolved against the working folder
    assert resolve_tracking_uri() == f"sqlite:///{tmp_path / 'elsewhere' / 'mlflow.db'}"
    clean.setenv("MLFLOW_TRACKING_URI", "postgresql://u@h/db")
    assert resolve_tracking_uri() == "postgresql://u@h/db"
    assert resolve_tracking_uri("http://h:5000") == "http://h:5000"  # explicit beats the environment


def test_relative_sqlite_paths_and_bare_files_become_absolute(clean, tmp_path):
    assert resolve_tracking_uri("sqlite:///rel/x.db") == f"sqlite:///{tmp_path / 'rel' / 'x.db'}"
    assert resolve_tracking_uri("sqlite:///rel/x.db?timeout=5") == f"sqlite:///{tmp_path / 'rel' / 'x.db'}?timeout=5"
    assert resolve_tracking_uri("runs.db") == f"sqlite:///{tmp_path / 'runs.db'}"
    assert resolve_tracking_uri("sqlite:////abs/x.db") == "sqlite:////abs/x.db"
    assert resolve_tracking_uri("file:./mlruns") == "file:./mlruns"
    assert resolve_tracking_uri("databricks") == "databricks"


def test_hpo_defaults_ask_the_same_resolver(clean, tmp_path):
    clean.setenv("HPO_HOME", str(tmp_path / "h"))
    assert defaults.tracking_uri() == resolve_tracking_uri() == f"sqlite:///{tmp_path / 'h' / 'mlflow.db'}"
    assert defaults.tracking_uri("sqlite:///a.db") == f"sqlite:///{tmp_path / 'a.db'}"
    assert defaults.artifact_root() == tmp_path / "h" / "artifacts"


def test_probe_of_a_dead_server_says_how_to_start_one():
    with pytest.raises(StoreUnavailable, match=r"cannot reach the MLflow server http://127\.0\.0\.1:9: it does not "
                                               r"answer .*start it .*MLFLOW_TRACKING_URI"):  # fmt: skip
        probe_server("http://127.0.0.1:9", timeout_s=2)  # the discard port: nothing listens
    with pytest.raises(StoreUnavailable, match=r"http://u:\*\*\*@127\.0\.0\.1:9"):  # no password in messages
        probe_server("http://u:secret@127.0.0.1:9", timeout_s=2)


class _Health(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        self.send_response(200 if self.path == "/ok/health" else 404)
        self.end_headers()
        self.wfile.write(b"OK")

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def http_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_probe_accepts_health_and_refuses_another_address(http_server):
    probe_server(http_server + "/ok")
    with pytest.raises(StoreUnavailable, match=r"answered 404 on /health; check the URI"):
        probe_server(http_server + "/not-mlflow")
