"""The sweep page on a sweep past the size where its slow analyses wait to be asked (AppTest, real SQLite store)."""

from __future__ import annotations

import ast
import base64
import importlib.util
import sys
from pathlib import Path

import numpy as np
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


def test_a_trial_beyond_the_first_curves_is_read_when_picked(big_sweep, monkeypatch):
    """The page reads the best few trials' curves at once; a trial picked later is read then, with its points."""
    import plotly.io

    from tracker.queries import FIRST_CURVES, Store

    uri, parent, _ = big_sweep
    data = Store(uri).sweep(parent, first_curves=True)
    assert len(data.curves_of) == FIRST_CURVES  # every trial of the bench sweep is finished and has a verdict
    ranked = data.trials.sort_values("best", ascending=False)
    last = ranked.iloc[-1]
    assert last["run_id"] not in data.curves_of
    monkeypatch.setenv("HPO_TRACKING_URI", uri)
    at = AppTest.from_file(str(ROOT / "dashboard" / "views" / "sweep.py"), default_timeout=120)
    at.query_params["run"] = parent
    at.run()
    at.multiselect(key="curve_trials").set_value([last["run_id"]]).run()
    assert not at.exception, [e.value for e in at.exception]
    figures = [plotly.io.from_json(c.proto.spec) for c in at.get("plotly_chart")]
    drawn = [t for f in figures for t in f.data if getattr(t, "legendgroup", None) == last["run_id"]]
    assert {t.name for t in drawn} == {f"trial {int(last['trial_number'])} train",
                                       f"trial {int(last['trial_number'])} val"}
    stored = Store(uri).histories([last["run_id"]])
    val = stored[stored["key"] == "val_loss"].sort_values("step")["value"].tolist()
    assert len(val) == 3 and _values(next(t for t in drawn if t.name.endswith(" val")).y) == pytest.approx(val)


def _values(y) -> list[float]:
    """A trace's values as sent to the browser: plotly packs numpy arrays as base64 (``bdata``)."""
    if isinstance(y, dict) and "bdata" in y:
        return np.frombuffer(base64.b64decode(y["bdata"]), dtype=y["dtype"]).tolist()
    return list(y)
