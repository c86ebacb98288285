"""Headless Chromium driven over its DevTools protocol, and a real ``streamlit run`` to point it at.

Chromium's own ``--screenshot`` fires before Streamlit's websocket has filled the page, so we
navigate over CDP, poll the DOM until the wanted elements exist, then ``Page.captureScreenshot``.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout_s: float, proc: subprocess.Popen[bytes] | None = None) -> bytes:
    deadline = time.monotonic() + timeout_s
    last: Exception | None = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return bytes(response.read())
        except OSError as e:
            last = e
            time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout_s} s: {last}")


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
    def __init__(self, ws: object) -> None:
        self.ws = ws
        self.ids = itertools.count(1)

    async def call(self, method: str, **params: object) -> dict[str, object]:
        call_id = next(self.ids)
        await self.ws.send(json.dumps({"id": call_id, "method": method, "params": params}))  # type: ignore[attr-defined]
        while True:
            message = json.loads(await self.ws.recv())  # type: ignore[attr-defined]
            if message.get("id") == call_id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return dict(message.get("result", {}))


async def _capture(
    ws_url: str, url: str, ready_js: str, timeout_s: float, width: int, height: int, text_js: str
) -> Capture:
    import websockets

    async with websockets.connect(ws_url, max_size=64 * 1024 * 1024) as ws:
        cdp = _Cdp(ws)
        await cdp.call("Page.enable")
        await cdp.call("Emulation.setDeviceMetricsOverride", width=width, height=height, deviceScaleFactor=1,
                       mobile=False)  # fmt: skip
        await cdp.call("Page.navigate", url=url)
        deadline = time.monotonic() + timeout_s
        ready = False
        while time.monotonic() < deadline:
            result = await cdp.call("Runtime.evaluate", expression=f"Boolean({ready_js})", returnByValue=True)
            if result.get("result", {}).get("value") is True:  # type: ignore[union-attr]
                ready = True
                break
            await asyncio.sleep(0.25)
        if ready:
            await asyncio.sleep(1.5)  # let plotly finish drawing after its node exists
        text = await cdp.call("Runtime.evaluate", expression=text_js, returnByValue=True)
        shot = await cdp.call("Page.captureScreenshot", format="png")
        return Capture(ready, str(text["result"].get("value", "")), base64.b64decode(str(shot["data"])))  # type: ignore[union-attr]


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
            return asyncio.run(_capture(page["webSocketDebuggerUrl"], url, ready_js, timeout_s, width, height, text_js))
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
