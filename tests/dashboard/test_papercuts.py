"""Issue 14's dashboard papercuts, each on a real MLflow SQLite store run through Streamlit's AppTest:
epochs run (not configured), durations below a minute, and running trials' ``final`` cell."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from sweep_store import _experiment, _log_curves, _parent, curves
from test_pages import run_page

from tracker import schema

CONFIGURED_EPOCHS = 15


def _trial(client: Any, exp: str, parent: str, number: int, start_ms: int, params: dict[str, Any]) -> str:
    from mlflow.entities import Param

    tags = {schema.PARENT_RUN_ID: parent, **schema.kind_tags(schema.KIND_TRIAL), schema.TRIAL_NUMBER: str(number)}
    run = client.create_run(exp, run_name=f"cuts-{number}", tags=tags, start_time=start_ms)
    client.log_batch(run.info.run_id, params=[Param(k, str(v)) for k, v in params.items()])
    return run.info.run_id


def _close(client: Any, run_id: str, status: str, end_ms: int, metrics: dict[str, float], tags: dict[str, str]) -> None:
    from mlflow.entities import Metric, RunTag

    client.log_batch(run_id, metrics=[Metric(k, v, end_ms, 0) for k, v in metrics.items()],
                     tags=[RunTag(k, v) for k, v in tags.items()])  # fmt: skip
    client.set_terminated(run_id, status=status, end_time=end_ms)


@pytest.fixture(scope="module")
def cuts_store(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """A running sweep whose trials all share the fixed setting ``epochs: 15`` (as ``hpo run`` logs it):
    trial 0 ran all 15 epochs in 0.42 s, trial 1 was stopped by ASHA after 4 epochs in 3.1 s, trial 2 ran
    65 s and then failed, trial 3 still runs (3 epochs logged, no summary metrics yet)."""
    from mlflow.tracking import MlflowClient

    root: Path = tmp_path_factory.mktemp("cuts-store")
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = _experiment(client, "cuts", root)
    parent = _parent(client, exp, "cuts", "val_accuracy", "running", 4)
    t0 = int(time.time() * 1000) - 600_000
    ids = {}
    shapes = [("good", CONFIGURED_EPOCHS, 420), ("underfit", 4, 3_100), ("good", 2, 65_000), ("overfit", 3, None)]
    for number, (shape, epochs, duration_ms) in enumerate(shapes):
        params = {"epochs": CONFIGURED_EPOCHS, "lr": 0.01 * (number + 1), "batch_size": 64}
        run_id = ids[f"t{number}"] = _trial(client, exp, parent, number, t0, params)
        data = curves(shape, CONFIGURED_EPOCHS, seed=number)
        _log_curves(client, run_id, data, epochs)
        if duration_ms is None:
            continue  # still RUNNING
        acc = data["val_accuracy"][:epochs]
        summary = {"best_val_accuracy": max(acc), "final_val_accuracy": acc[-1], "epochs_run": float(epochs)}
        if number == 0:
            _close(client, run_id, "FINISHED", t0 + duration_ms, summary, {})
        elif number == 1:
            tags = {schema.EARLY_STOPPED: "true", schema.STOPPED_BY: "asha"}
            _close(client, run_id, "KILLED", t0 + duration_ms, summary, tags)
        else:
            _close(client, run_id, "FAILED", t0 + duration_ms, {}, {schema.ERROR: "RuntimeError: boom"})
    ids["uri"], ids["parent"] = uri, parent
    ids["latest"] = f"{curves('overfit', CONFIGURED_EPOCHS, seed=3)['val_accuracy'][2]:.4f}"
    return ids


def _board(cuts_store: dict[str, str], store_env: pytest.MonkeyPatch) -> Any:
    at = run_page("sweep", store_env, cuts_store["uri"], run=cuts_store["parent"])
    return at.dataframe[0].value.set_index("trial")


def test_leaderboard_shows_epochs_run_not_configured(cuts_store, store_env):
    board = _board(cuts_store, store_env)
    # the stopped trial showed "15" (the fixed setting `epochs` replaced the column of epochs run)
    assert board.loc[1, "epochs"] == f"4 of {CONFIGURED_EPOCHS}"
    assert board.loc[0, "epochs"] == str(CONFIGURED_EPOCHS)  # ran them all: no "of"
    assert board.loc[3, "epochs"] == f"3 of {CONFIGURED_EPOCHS}"  # running, from its curve
    assert "epochs (param)" not in board.columns and {"lr", "batch_size"} <= set(board.columns)


def test_leaderboard_durations_keep_useful_precision(cuts_store, store_env):
    board = _board(cuts_store, store_env)
    assert board.loc[0, "duration"] == "0.42 s"  # was "0 s"
    assert board.loc[1, "duration"] == "3.1 s"
    assert board.loc[2, "duration"] == "1 min 05 s"


def test_running_trial_shows_latest_value_labelled_not_none(cuts_store, store_env):
    board = _board(cuts_store, store_env)
    assert board.loc[3, "final"] == f"{cuts_store['latest']} (latest)"  # was None
    assert board.loc[0, "final"].replace(".", "").isdigit()  # a finished trial's plain final value
    assert not board["final"].isna().any() and "None" not in board["final"].tolist()


def test_durations_format_from_sub_second_to_hours():
    from dashboard._data import format_duration

    assert [format_duration(s) for s in (0.42, 3.14, 42.4, 65, 7380, None)] == [
        "0.42 s", "3.1 s", "42 s", "1 min 05 s", "2 h 03 min", "—"]  # fmt: skip
