"""Start the dashboard as a ``streamlit run`` subprocess; ``hpo dashboard`` calls :func:`serve`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

APP = Path(__file__).resolve().parent / "app.py"


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
    """Serve the dashboard for ``tracking_uri`` until interrupted.

    Args:
        tracking_uri: the store to read (already resolved: sqlite path absolute).
        port: TCP port to listen on.
        host: address to bind; 127.0.0.1 keeps it local.
        open_browser: let Streamlit open a browser tab.

    Returns:
        Streamlit's exit code (0 after Ctrl-C).
    """
    process = subprocess.Popen(command(tracking_uri, port, host=host, open_browser=open_browser))
    try:
        return process.wait()
    except KeyboardInterrupt:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
        return 0
