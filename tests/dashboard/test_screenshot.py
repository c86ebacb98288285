"""The sweep page served by a real ``streamlit run`` on 127.0.0.1, rendered by headless Chromium.

Skips (with the reason) when no Chromium is installed; CI installs Debian's ``chromium``.
"""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from browser import chromium_binary, free_port, screenshot, streamlit_server

from dashboard.server import command

pytestmark = pytest.mark.skipif(
    chromium_binary() is None,
    reason="chromium is not installed (apt-get install -y chromium); CI installs it",
)

# Ready when the leaderboard grid and a drawn plotly chart exist and the script run has ended.
READY_JS = (
    'document.querySelector(\'[data-testid="stDataFrame"] canvas, [data-testid="stDataFrame"] table\')'
    " && document.querySelector('.js-plotly-plot .main-svg .cartesianlayer .trace')"
    " && !document.querySelector('[data-testid=\"stStatusWidget\"]')"
)


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    return struct.unpack(">II", data[16:24])


def test_sweep_page_screenshot(sweep_store, tmp_path):
    port = free_port()
    out = Path(os.environ.get("HPO_SCREENSHOT_DIR", tmp_path))
    with streamlit_server(command(sweep_store.uri, port), port, tmp_path / "streamlit.log") as base:
        capture = screenshot(f"{base}/sweep?run={sweep_store.demo}", READY_JS)
    (out / "sweep_page.png").write_bytes(capture.png)
    log = (tmp_path / "streamlit.log").read_text()
    assert capture.ready, f"the leaderboard and a chart never appeared; page text:\n{capture.text[:2000]}\n{log}"
    assert "Traceback" not in capture.text and "Error" not in capture.text.split("Leaderboard")[0]
    assert "Sweep demo" in capture.text and "Leaderboard" in capture.text
    assert f"{sweep_store.best_value:.4f}" in capture.text
    assert "Best so far" in capture.text  # the chart's title, drawn by plotly into the DOM
    width, height = _png_size(capture.png)
    assert (width, height) == (1400, 1800)
    assert len(capture.png) > 50_000  # a blank page compresses to a few kB
