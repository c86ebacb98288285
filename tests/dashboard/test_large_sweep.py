"""The sweep page on a sweep past the size where its slow analyses wait to be asked (AppTest, real SQLite store)."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parents[2]


def _bench():
    spec = importlib.util.spec_from_file_location("hpo_bench_dashboard_scale", ROOT / "bench" / "dashboard_scale.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _page_threshold() -> int:
    """The page's ``ANALYSIS_AUTO_TRIALS``, read from its source (importing a page script runs it)."""
    tree = ast.parse((ROOT / "dashboard" / "views" / "sweep.py").read_text())
    for node in tree.body:
        if isinstance(node, ast.Assign) and getattr(node.targets[0], "id", "") == "ANALYSIS_AUTO_TRIALS":
            return int(ast.literal_eval(node.value))
    raise AssertionError("dashboard/views/sweep.py defines no ANALYSIS_AUTO_TRIALS")


@pytest.fixture(scope="module")
def big_sweep(tmp_path_factory):
    threshold = _page_threshold()
    uri = f"sqlite:///{tmp_path_factory.mktemp('big-sweep') / 'mlflow.db'}"
    return uri, _bench().fill(uri, threshold + 1, 3), threshold + 1


def test_importance_and_contour_wait_for_their_buttons(big_sweep, monkeypatch):
    uri, parent, trials = big_sweep
    monkeypatch.setenv("HPO_TRACKING_URI", uri)
    at = AppTest.from_file(str(ROOT / "dashboard" / "views" / "sweep.py"), default_timeout=120)
    at.query_params["run"] = parent
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    captions = "\n".join(str(c.value) for c in at.caption)
    assert f"fANOVA over {trials} trials" in captions and f"contour over {trials} trials" in captions
    charts = len(at.get("plotly_chart"))  # no importance bar, no contour yet
    assert {b.key for b in at.button} >= {"importance_compute", "contour_compute"}

    next(b for b in at.button if b.key == "contour_compute").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("plotly_chart")) == charts + 1
    assert [s.key for s in at.selectbox if s.key in ("contour_x", "contour_y")] == ["contour_x", "contour_y"]
    at.run()  # asked once: drawn on every rerun after, without its button
    assert len(at.get("plotly_chart")) == charts + 1
    assert "contour_compute" not in {b.key for b in at.button} and "importance_compute" in {b.key for b in at.button}

    next(b for b in at.button if b.key == "importance_compute").click()
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("plotly_chart")) == charts + 2
    assert any(t.label == "Importance" for t in at.tabs)
