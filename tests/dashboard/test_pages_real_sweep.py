"""The dashboard against a store written by a real `hpo run` (Ray + MLflow), not a hand-built one.

``small_sweep_store`` (tests/conftest.py) is a 6-point digits grid: 1 finished, 4 stopped by ASHA,
1 failed (diverged). Each page must show those rows, the winner and the verdicts the runner logged.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from streamlit.testing.v1 import AppTest

from tracker import schema

VIEWS = Path(__file__).resolve().parents[2] / "dashboard" / "views"


def page(name: str, monkeypatch: pytest.MonkeyPatch, uri: str, **query: str) -> AppTest:
    for var in ("MLFLOW_TRACKING_URI", "HPO_MLFLOW_UI_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HPO_TRACKING_URI", uri)
    at = AppTest.from_file(str(VIEWS / f"{name}.py"), default_timeout=90)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def shown(at: AppTest) -> str:
    kinds = ("title", "markdown", "caption", "info", "warning", "error", "success")
    return "\n".join(str(el.value) for kind in kinds for el in at.get(kind))


def test_sweeps_page_lists_the_real_sweep(small_sweep_store, monkeypatch):
    uri, parent, result = small_sweep_store
    at = page("sweeps", monkeypatch, uri)
    row = at.dataframe[0].value.set_index("sweep").loc[result["sweep"]]
    statuses = [t["status"] for t in result["trials"]]
    stopped = sum(t["early_stopped"] for t in result["trials"])
    assert row["failed"] == statuses.count("FAILED") == 1
    assert row["stopped"] == stopped >= 1
    assert row["finished"] == statuses.count("FINISHED")
    assert row["best"] == pytest.approx(result["best"]["metric"])
    assert (row["method"], row["sampler"], row["state"]) == ("grid", "grid", "finished")


def test_sweep_page_leaderboard_matches_the_run(small_sweep_store, monkeypatch):
    uri, parent, result = small_sweep_store
    at = page("sweep", monkeypatch, uri, run=parent)
    board = at.dataframe[0].value
    assert len(board) == len(result["trials"]) == 6
    assert board["val_accuracy"].iloc[0] == pytest.approx(result["best"]["metric"])
    client = MlflowClient(uri)
    verdicts = {client.get_run(t["run_id"]).data.tags.get(schema.DIAGNOSIS) for t in result["trials"]}
    assert set(board["verdict"]) - {"no verdict"} <= verdicts - {None}
    assert board.loc[board["state"] == "failed", "error"].str.contains("nan", case=False).all()
    assert f"val_accuracy = {result['best']['metric']:.4f}" in shown(at)


def test_trial_page_of_the_failed_trial_shows_its_error(small_sweep_store, monkeypatch):
    uri, _, result = small_sweep_store
    failed = next(t for t in result["trials"] if t["status"] == "FAILED")
    at = page("trial", monkeypatch, uri, run=failed["run_id"])
    assert "This trial failed" in shown(at)


def test_leaderboard_epochs_are_the_epochs_run(small_sweep_store, monkeypatch):
    """Issue 14.4: trials ASHA stopped showed the configured epochs (the fixed setting `epochs`, logged as a
    param, replaced the column); now the column agrees with `hpo run`'s own table."""
    uri, parent, result = small_sweep_store
    board = page("sweep", monkeypatch, uri, run=parent).dataframe[0].value.set_index("trial")
    for trial in result["trials"]:
        if trial["status"] == "FAILED":
            continue
        ran = trial["epochs"]
        assert board.loc[trial["trial_number"], "epochs"] == (str(ran) if ran == 6 else f"{ran} of 6"), trial
    short = board.loc[board["state"] != "failed", "epochs"].str.endswith(" of 6").sum()
    assert short == sum(t["early_stopped"] for t in result["trials"]) >= 1  # the trials ASHA stopped
