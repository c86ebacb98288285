"""The sweep page of a multi-objective sweep, run by Streamlit's AppTest against a real MLflow store:
the Pareto scatter with the front drawn, the front table, hypervolume by trial and importance per objective.
(A single-objective sweep shows no such section: test_pages counts the demo sweep's charts.)"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
from sweep_store import _experiment, _parent, _trial
from test_pages import plotly_count, run_page, table_with, texts

from tracker import schema

# trial number -> (hidden, lr, val_accuracy per epoch, status); params = 10 * hidden
# front (max accuracy at the best epoch, min params): 1 (0.95, 640), 2 (0.90, 160), 4 (0.80, 80)
# dominated: 0 (0.85 at epoch 2, 320: beaten by trial 2), 3 (0.70, 160: beaten by 2), 5 FAILED (would dominate all)
TRIALS: list[tuple[int, float, list[float], str]] = [
    (32, 0.01, [0.80, 0.85], "FINISHED"),
    (64, 0.02, [0.90, 0.95], "FINISHED"),
    (16, 0.03, [0.90, 0.88], "FINISHED"),  # best epoch 1: 0.90 at 160 params
    (16, 0.001, [0.60, 0.70], "FINISHED"),
    (8, 0.05, [0.75, 0.80], "FINISHED"),
    (4, 0.04, [0.99, 0.99], "FAILED"),
]
OBJECTIVES = [{"name": "val_accuracy", "goal": "maximize"}, {"name": "params", "goal": "minimize"}]


def _build(root: Path) -> tuple[str, str, dict[int, str]]:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = _experiment(client, "mo", root)
    parent = _parent(client, exp, "mo", "val_accuracy", "finished", len(TRIALS))
    client.set_tag(parent, schema.OBJECTIVES, json.dumps(OBJECTIVES))
    now = int(time.time() * 1000)
    runs = {}
    for number, (hidden, lr, accuracy, status) in enumerate(TRIALS):
        run_id = _trial(client, exp, parent, number, {"hidden": hidden, "lr": lr})
        points = [Metric("val_accuracy", a, now, epoch) for epoch, a in enumerate(accuracy, 1)]
        points += [Metric("params", 10.0 * hidden, now, epoch) for epoch in (1, 2)]
        points += [Metric("val_loss", 1 - a, now, epoch) for epoch, a in enumerate(accuracy, 1)]
        points.append(Metric(schema.BEST_PREFIX + "val_accuracy", max(accuracy), now, 0))
        client.log_batch(run_id, metrics=points)
        client.set_terminated(run_id, status=status)
        runs[number] = run_id
    client.set_terminated(parent, status="FINISHED")
    return uri, parent, runs


@pytest.fixture(scope="module")
def pareto_store(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str, dict[int, str]]:
    return _build(tmp_path_factory.mktemp("pareto-store"))


def test_sweep_page_shows_the_front_scatter_table_hypervolume_and_importance(pareto_store: Any, store_env: Any) -> None:
    uri, parent, _ = pareto_store
    at = run_page("sweep", store_env, uri, run=parent)
    shown = texts(at)
    assert "maximize val_accuracy, minimize params" in shown
    assert "3 of 5 trials on the front" in shown  # the FAILED trial is not scored
    front = table_with(at, "params")
    assert front["trial_number"].tolist() == [1, 2, 4]  # best first on val_accuracy
    assert front["val_accuracy"].tolist() == pytest.approx([0.95, 0.90, 0.80])
    assert front["params"].tolist() == [640.0, 160.0, 80.0]
    assert set(front["hidden"]) == {64, 16, 8}
    assert plotly_count(at) >= 4  # scatter, hypervolume, importance, and the single-metric charts below
    scatter = _figure(at, "Pareto front")
    names = {trace.name: trace for trace in scatter.data}
    assert sorted(_values(names["Pareto front"].x)) == [80.0, 160.0, 640.0]
    assert sorted(_values(names["dominated"].x)) == [160.0, 320.0]
    assert names["front"].line.shape == "hv" and _values(names["front"].x) == [80.0, 160.0, 640.0]
    curve = _values(_figure(at, "Hypervolume").data[0].y)
    assert _values(_figure(at, "Hypervolume").data[0].x) == [0, 1, 2, 3, 4]
    assert curve == sorted(curve) and curve[3] == curve[2] and curve[4] > curve[3]  # trial 3 adds nothing
    tabs = [t.label for t in at.tabs]  # one importance tab per objective
    assert "val_accuracy" in tabs and "params" in tabs


def _values(array: Any) -> list[float]:
    """A trace's array as a list: plotly ships numpy arrays base64-encoded ({bdata, dtype})."""
    if isinstance(array, dict) and "bdata" in array:
        import base64

        import numpy as np

        return np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"]).tolist()
    return list(array)


def _figure(at: Any, title: str) -> Any:
    import plotly.io

    for chart in at.get("plotly_chart"):
        figure = json.loads(chart.proto.spec)
        if figure["layout"].get("title", {}).get("text") == title:
            return plotly.io.from_json(chart.proto.spec)
    raise AssertionError(f"no chart titled {title!r}")
