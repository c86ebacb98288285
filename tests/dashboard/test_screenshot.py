"""The sweep page served by a real ``streamlit run`` on 127.0.0.1, rendered by headless Chromium.

Skips (with the reason) when no Chromium is installed; CI installs Debian's ``chromium``.
"""

from __future__ import annotations

import io
import os
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest
from browser import chromium_binary, free_port, screenshot, streamlit_server
from PIL import Image  # streamlit's own dependency
from sweep_store import DEMO_TRIALS

from dashboard._charts import VERDICT_COLORS
from dashboard.server import command

pytestmark = pytest.mark.skipif(
    chromium_binary() is None,
    reason="chromium is not installed (apt-get install -y chromium); CI installs it",
)

VERDICT_BARS = len({verdict or "no verdict" for *_, verdict in DEMO_TRIALS})
# Ready when the leaderboard grid, a drawn plotly chart and every bar of the verdict chart exist and
# the script run has ended.
READY_JS = (
    'document.querySelector(\'[data-testid="stDataFrame"] canvas, [data-testid="stDataFrame"] table\')'
    " && document.querySelector('.js-plotly-plot .main-svg .cartesianlayer .trace')"
    f" && document.querySelectorAll('.js-plotly-plot .barlayer .point').length >= {VERDICT_BARS}"
    " && !document.querySelector('[data-testid=\"stStatusWidget\"]')"
)


def _painted(png: bytes) -> Callable[[str], int]:
    """For the picture ``png``: how many of its pixels have exactly the colour "#rrggbb"."""
    image = Image.open(io.BytesIO(png)).convert("RGB")
    counts = {rgb: n for n, rgb in image.getcolors(maxcolors=image.width * image.height) or []}
    return lambda hex_color: counts.get(tuple(int(hex_color[i : i + 2], 16) for i in (1, 3, 5)), 0)


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
    # The verdict chart was painted, not only put in the DOM: each verdict's bar, in its colour, covers
    # an area in proportion to its number of trials (equal widths, heights from 0).
    # the failed trial logged no verdict: the page diagnoses it as `hpo diagnose RUN_ID` does (NaN loss)
    counts = Counter(verdict or ("diverged" if shape == "failed" else None) for _, shape, _, verdict in DEMO_TRIALS)
    counts.pop(None, None)
    painted = _painted(capture.png)
    area_per_trial = {v: painted(VERDICT_COLORS[v]) / n for v, n in counts.items()}
    assert min(area_per_trial.values()) > 1000, area_per_trial  # a bar for one trial is ~60 x 70 px
    assert max(area_per_trial.values()) < 1.15 * min(area_per_trial.values()), area_per_trial
