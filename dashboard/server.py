"""Start the dashboard as a ``streamlit run`` subprocess; ``hpo dashboard`` calls :func:`serve`.

The Streamlit server must not outlive ``hpo dashboard``: an orphan keeps the port, and the next
``hpo dashboard`` on it fails. SIGTERM and SIGHUP (``kill``, systemd, container runtimes, a closed
terminal) are forwarded to it, and it gets a parent-death signal for the cases no handler sees (SIGKILL).
"""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType

from hpo.ui import die_with_parent  # light: the standard library and tracker.uri

APP = Path(__file__).resolve().parent / "app.py"
STOP_TIMEOUT_S = 10.0


def command(tracking_uri: str, port: int, *, host: str = "127.0.0.1", open_browser: bool = False) -> list[str]:
    """The ``python -m streamlit run`` command line that serves the dashboard on ``host:port``."""
    return [
        sys.executable, "-m", "streamlit", "run", str(APP),
        "--server.address", host,
        "--server.port", str(port),
        "--server.headless", "false" if open_browser else "true",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "viewer",
        "--", "--tracking-uri", tracking_uri,
    ]  # fmt: skip


def serve(tracking_uri: str, port: int, *, host: str = "127.0.0.1", open_browser: bool = False) -> int:
    """Serve the dashboard for ``tracking_uri`` until interrupted (Ctrl-C, SIGTERM or SIGHUP).

    Args:
        tracking_uri: the store to read (already resolved: sqlite path absolute).
        port: TCP port to listen on.
        host: address to bind; 127.0.0.1 keeps it local.
        open_browser: let Streamlit open a browser tab.

    Returns:
        Streamlit's exit code when it ends on its own; 0 after a stop signal (Streamlit is stopped first).
    """
    previous = _raise_on_stop_signals()
    try:
        # Popen from the calling (main) thread: Linux sends the parent-death signal when this THREAD ends.
        process = subprocess.Popen(
            command(tracking_uri, port, host=host, open_browser=open_browser), preexec_fn=die_with_parent()
        )
        try:
            return process.wait()
        except (KeyboardInterrupt, _StopSignal):
            process.terminate()
            try:
                process.wait(timeout=STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            return 0
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, signal.SIG_DFL if handler is None else handler)  # None: set outside Python


class _StopSignal(Exception):
    """SIGTERM or SIGHUP arrived: unwinds ``serve`` the way Ctrl-C's KeyboardInterrupt does."""


def _raise_on_stop_signals() -> dict[int, Callable[[int, FrameType | None], object] | int | None]:
    if threading.current_thread() is not threading.main_thread():  # only the main thread may set handlers
        return {}

    def stop(signum: int, frame: FrameType | None) -> None:
        raise _StopSignal(signal.Signals(signum).name)

    return {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
