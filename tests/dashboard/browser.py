"""Headless Chromium driven over its DevTools protocol, and a real ``streamlit run`` to point it at.

Chromium's own ``--screenshot`` fires before Streamlit's websocket has filled the page, so we
navigate over CDP, poll the DOM until the wanted elements exist, let the browser paint them, then
``Page.captureScreenshot``.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from waiting import WaitTimeout, free_port, http_body, wait_until

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--hide-scrollbars",
]


def chromium_binary() -> str | None:
    for name in ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable"):
        found = shutil.which(name)
        if found:
            return found
    return None


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> bytes:
    """The body ``url`` answers with, once it does; fails when ``proc`` (its server) exits first."""
    return wait_until(lambda: http_body(url), timeout_s, process=proc, message=f"{url} answers")


@contextlib.contextmanager
def streamlit_server(command: list[str], port: int, log: Path, timeout_s: float = 60) -> Iterator[str]:
    """Run ``command`` (a ``streamlit run`` line on ``port``) until the block ends; yields the base URL."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with log.open("wb") as out:
        proc = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            _wait_http(f"http://127.0.0.1:{port}/_stcore/health", timeout_s, proc)
            yield f"http://127.0.0.1:{port}"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@dataclass
class Capture:
    ready: bool  # the wanted elements appeared before the timeout
    text: str  # document.body.innerText when captured
    png: bytes


class _Cdp:
    """Chrome DevTools Protocol calls over one page's websocket, answered in order."""

    def __init__(self, ws: Any) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    def call(self, method: str, **params: object) -> dict[str, Any]:
        call_id = next(self.ids)
        self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))
        while True:  # events (Page.*) arrive between the answers; skip them
            message = json.loads(self.ws.recv(timeout=60))  # a browser that stopped answering fails the test
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))

    def evaluate(self, expression: str, *, await_promise: bool = False) -> Any:
        """The value of a JavaScript expression in the page."""
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=await_promise)
        return result.get("result", {}).get("value")


# Resolves after two animation frames: the first lays out and paints what the DOM holds now, the
# second starts only once that paint is done.
_PAINTED_JS = "new Promise(done => requestAnimationFrame(() => requestAnimationFrame(() => done(true))))"


def _capture(ws_url: str, url: str, ready_js: str, timeout_s: float, width: int, height: int, text_js: str) -> Capture:
    from websockets.sync.client import connect

    with connect(ws_url, max_size=64 * 1024 * 1024) as ws:
        cdp = _Cdp(ws)
        cdp.call("Page.enable")
        cdp.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                 mobile=False)  # fmt: skip
        cdp.call("Page.navigate", url=url)
        try:
            wait_until(lambda: cdp.evaluate(f"Boolean({ready_js})") is True, timeout_s, interval_s=0.25,
                       message=f"the page shows {ready_js}")
            ready = True
            cdp.evaluate(_PAINTED_JS, await_promise=True)
        except WaitTimeout:
            ready = False  # capture anyway: the picture and the page text say what is missing
        text = cdp.evaluate(text_js)
        shot = cdp.call("Page.captureScreenshot", format="png")
        return Capture(ready, str(text or ""), base64.b64decode(str(shot["data"])))


def screenshot(
    url: str,
    ready_js: str,
    *,
    timeout_s: float = 45,
    width: int = 1400,
    height: int = 1800,
    text_js: str = "document.body.innerText",
) -> Capture:
    """Open ``url`` in a fresh headless Chromium, wait until ``ready_js`` is true, capture the page."""
    binary = chromium_binary()
    if binary is None:
        raise FileNotFoundError("chromium is not installed")
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="hpo-chromium-", ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen(
            [binary, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--remote-debugging-port={port}",
             f"--window-size={width},{height}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
        )  # fmt: skip
        try:
            _wait_http(f"http://127.0.0.1:{port}/json/version", 30, proc)
            targets = json.loads(_wait_http(f"http://127.0.0.1:{port}/json/list", 10))
            page = next(t for t in targets if t.get("type") == "page")
            return _capture(page["webSocketDebuggerUrl"], url, ready_js, timeout_s, width, height, text_js)
        finally:
            _stop_group(proc)


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    """Chromium forks helpers (zygote, renderer): end its whole session, which we created for it."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
