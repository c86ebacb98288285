"""``hpo ui``: the MLflow UI and the dashboard over one store, started together, stopped together.

Children run in their own sessions (process groups), so a Ctrl-C in the terminal reaches only ``hpo ui``,
which then stops each whole group (``mlflow server`` starts its own uvicorn process) and waits for it.
SIGTERM and SIGHUP stop them the same way; a parent-death signal stops them when ``hpo ui`` dies by SIGKILL.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from tracker.uri import is_server_uri

STOP_TIMEOUT_S = 10.0
POLL_S = 0.5
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass(frozen=True)
class Service:
    """One thing ``hpo ui`` shows: its URL, and the command that serves it (None: already served)."""

    name: str
    url: str
    command: Sequence[str] | None = None
    env: Mapping[str, str] = field(default_factory=dict)


def mlflow_ui(tracking_uri: str, host: str, port: int, artifacts: Path) -> Service:
    """The MLflow UI for ``tracking_uri``: a server's own address, or an ``mlflow server`` over a database.

    Args:
        tracking_uri: the resolved store.
        host: address to bind a started server to.
        port: its port.
        artifacts: where artifacts of experiments created in the UI go (hpo's own set their location).
    """
    if is_server_uri(tracking_uri):
        return Service("MLflow UI", tracking_uri.rstrip("/"))
    command = [
        sys.executable, "-m", "mlflow", "server",
        "--backend-store-uri", tracking_uri,
        "--artifacts-destination", str(artifacts),
        "--host", host, "--port", str(port), "--workers", "1",
    ]  # fmt: skip
    # Job execution would start a Huey consumer per server; the UI needs none.
    return Service("MLflow UI", f"http://{host}:{port}", command, {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"})


def run(services: Sequence[Service], out: TextIO = sys.stderr) -> int:
    """Start every service that has a command, print all addresses, wait for SIGINT/SIGTERM/SIGHUP, stop them.

    Call it from the main thread: Linux sends the children's parent-death signal when the thread that
    started them ends, and only the main thread can catch signals.

    Returns:
        0 after a signal; 1 when a child exits on its own (its exit code is printed).
    """
    stop = threading.Event()
    previous = _on_signals(lambda signum, frame: stop.set())
    processes: list[tuple[Service, subprocess.Popen[bytes]]] = []
    try:
        for service in services:
            if service.command is not None:
                process = subprocess.Popen(
                    list(service.command), env={**os.environ, **service.env}, start_new_session=True,
                    preexec_fn=die_with_parent(),
                )  # fmt: skip
                processes.append((service, process))
        for service in services:
            print(f"{service.name + ':':<12} {service.url}", file=out)
        print("Ctrl-C stops them.", file=out, flush=True)
        while not stop.wait(POLL_S):
            for service, process in processes:
                code = process.poll()
                if code is not None:
                    print(f"error: {service.name} exited with code {code}; stopping the rest", file=out)
                    return 1
        return 0
    finally:
        for _, process in processes:
            _stop(process)
        _restore(previous)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM the child's process group, wait, then SIGKILL what is left."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            pass
        try:
            process.wait(timeout=STOP_TIMEOUT_S)
            try:  # the leader is gone; its group (e.g. uvicorn workers) may not be
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return
        except subprocess.TimeoutExpired:
            continue


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` asking Linux to SIGTERM the child when its parent dies, even by SIGKILL (a new
    session does not stop it); None elsewhere. Exits the child when the parent already died before the
    prctl. ``hpo dashboard`` (``dashboard/server.py``) uses it too.
    """
    if not sys.platform.startswith("linux"):
        return None
    parent = os.getpid()

    def preexec() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:
            os._exit(1)

    return preexec


Handler = signal.Handlers | int | None | object


def _on_signals(handler: object) -> dict[signal.Signals, Handler]:
    if threading.current_thread() is not threading.main_thread():
        return {}
    previous: dict[signal.Signals, Handler] = {}
    for sig in STOP_SIGNALS:
        previous[sig] = signal.signal(sig, handler)  # type: ignore[arg-type]
    return previous


def _restore(previous: Mapping[signal.Signals, Handler]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)  # type: ignore[arg-type]
