"""The trial page shows the training signals of a real sweep's trial beside its curves (AppTest)."""

from __future__ import annotations

import pytest
from test_pages import plotly_count, run_page, table_with, texts

from tracker.queries import Store


def test_trial_page_shows_the_signals_and_the_findings_from_them(small_sweep_store, store_env: pytest.MonkeyPatch):
    uri, _, result = small_sweep_store
    store = Store(uri)
    slow = next(row["run_id"] for row in result["trials"]
                if (p := store.trial(row["run_id"]).params)["optimizer"] == "sgd" and float(p["lr"]) == 1e-6
                and float(p.get("weight_decay", 0)) == 0)
    at = run_page("trial", store_env, uri, run=slow)
    assert "Inside training" in [h.value for h in at.subheader]
    assert "update_ratio_too_small" in texts(at, "warning")
    assert plotly_count(at) == 4  # loss, accuracy; gradients and updates, units
    table = table_with(at, "signal").set_index("signal")
    assert float(table.loc["update_ratio_output", "last epoch"]) < 1e-5  # lr 1e-6 barely moves the weights
    assert {"grad_norm", "dead_relu", "weight_norm", "init_dead_relu"} <= set(table.index)
