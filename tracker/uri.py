"""Which tracking store to use and whether it answers: the one URI resolver and the one health probe.

The writer (``tracker.mlflow_log``), the readers (``tracker.queries``), the CLI (through
``hpo.defaults``) and the dashboard all resolve a tracking URI here, so they agree on the store:
an explicit URI, else ``MLFLOW_TRACKING_URI``, else ``mlflow.db`` in the embedded home folder
(``$HPO_HOME`` or ``./.hpo``). Nothing heavy is imported: the probe uses the standard library.
"""

from __future__ import annotations

import os
import urllib.error
import urllib.request
from pathlib import Path

from tracker.errors import StoreUnavailable

__all__ = [
    "HOME_ENV",
    "PROBE_TIMEOUT_S",
    "home",
    "is_server_uri",
    "probe_server",
    "redact",
    "resolve_tracking_uri",
    "sqlite_path",
]

HOME_ENV = "HPO_HOME"  # overrides ./.hpo
TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
PROBE_TIMEOUT_S = 5.0


def home() -> Path:
    """Folder of the embedded store: ``$HPO_HOME`` or ``./.hpo`` (absolute)."""
    return Path(os.environ.get(HOME_ENV) or ".hpo").resolve()


def resolve_tracking_uri(explicit: str | None = None) -> str:
    """The MLflow store to use: ``explicit``, else ``$MLFLOW_TRACKING_URI``, else SQLite in :func:`home`.

    Relative SQLite paths become absolute (relative to the current directory), and a bare path to a
    database file becomes a ``sqlite:///`` URI, so every process started from here (Ray workers, the
    dashboard, ``mlflow ui``) opens the same file.
    """
    uri = explicit or os.environ.get(TRACKING_URI_ENV) or f"sqlite:///{home() / 'mlflow.db'}"
    if uri.startswith("sqlite:///"):
        path, sep, query = uri[len("sqlite:///") :].partition("?")
        if path and path != ":memory:" and not os.path.isabs(path):
            uri = f"sqlite:///{(Path.cwd() / path).resolve()}{sep}{query}"
    elif ":" not in uri.split("/", 1)[0] and uri != "databricks":  # a bare path: no http:, postgresql:, file:
        uri = f"sqlite:///{Path(uri).resolve()}"
    return uri


def is_server_uri(uri: str) -> bool:
    """An MLflow tracking server (``http(s)://``), as opposed to a database the client opens itself."""
    return uri.startswith(("http://", "https://"))


def sqlite_path(tracking_uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` URI, else None."""
    prefix = "sqlite:///"
    return Path(tracking_uri[len(prefix) :]) if tracking_uri.startswith(prefix) else None


def redact(uri: str) -> str:
    """``uri`` without a password, for messages and logs."""
    scheme, sep, rest = uri.partition("://")
    if not sep or "@" not in rest:
        return uri
    credentials, _, host = rest.rpartition("@")
    user = credentials.split(":", 1)[0]
    return f"{scheme}://{user}:***@{host}"


def probe_server(tracking_uri: str, timeout_s: float = PROBE_TIMEOUT_S) -> None:
    """One GET of an MLflow server's ``/health``, so a dead server fails in seconds.

    MLflow's own client retries a dead server for minutes (measured: 250 s for ``hpo run`` against
    http://127.0.0.1:1 before this probe), and the dashboard would hang as long on every page.

    Raises:
        StoreUnavailable: nothing answers (message says how to start one or choose another store), or
            the address answers with an HTTP error (not an MLflow server's address).
    """
    shown = redact(tracking_uri)
    url = tracking_uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - http(s) only, by callers
            response.read(64)
    except urllib.error.HTTPError as e:
        raise StoreUnavailable(
            f"the MLflow server {shown} answered {e.code} on /health; check the URI "
            "(an MLflow tracking server's address, e.g. http://127.0.0.1:5000)"
        ) from e
    except (OSError, ValueError) as e:
        reason = getattr(e, "reason", e)
        raise StoreUnavailable(
            f"cannot reach the MLflow server {shown}: it does not answer ({reason}); start it "
            "(`docker compose up -d`, or `mlflow server ...`), correct --tracking-uri / tracking_uri / "
            "MLFLOW_TRACKING_URI, or leave them unset for the local store in ./.hpo"
        ) from e
