"""Each dashboard page run by Streamlit's AppTest against a real MLflow store; asserts what it shows."""

from __future__ import annotations

from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

VIEWS = Path(__file__).resolve().parents[2] / "dashboard" / "views"
APP = VIEWS.parent / "app.py"


def run_page(page: str, monkeypatch: pytest.MonkeyPatch, uri: str, **query: str) -> AppTest:
    monkeypatch.setenv("HPO_TRACKING_URI", uri)
    at = AppTest.from_file(str(VIEWS / f"{page}.py"), default_timeout=60)
    for key, value in query.items():
        at.query_params[key] = value
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at


def texts(at: AppTest, *kinds: str) -> str:
    kinds = kinds or ("title", "markdown", "caption", "info", "warning", "error", "success")
    return "\n".join(str(el.value) for kind in kinds for el in at.get(kind))


def table_with(at: AppTest, column: str):
    """The first dataframe shown with ``column`` (plain st.dataframe elements carry no key in AppTest)."""
    for frame in at.dataframe:
        if column in frame.value.columns:
            return frame.value
    raise AssertionError(f"no table with column {column!r}")


def plotly_count(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


# -- Sweeps ----------------------------------------------------------------------------------------------
def test_sweeps_lists_every_sweep_with_counts_and_best(sweep_store, store_env):
    at = run_page("sweeps", store_env, sweep_store.uri)
    table = at.dataframe[0].value.set_index("sweep")
    assert set(table.index) == {"demo", "broken", "live"}
    demo = table.loc["demo"]
    # 8 trials: the ninth was deleted in MLflow and must not count
    assert (demo["finished"], demo["failed"], demo["stopped"], demo["running"]) == (6, 1, 1, 0)
    assert demo["best"] == pytest.approx(sweep_store.best_value)
    assert (demo["method"], demo["sampler"], demo["state"]) == ("bayes", "tpe", "finished")
    assert table.loc["broken", "failed"] == 3 and table.loc["live", "running"] == 1
    assert demo["open"] == f"/sweep?run={sweep_store.demo}"


def test_sweeps_search_by_name(sweep_store, store_env):
    store_env.setenv("HPO_TRACKING_URI", sweep_store.uri)
    at = AppTest.from_file(str(VIEWS / "sweeps.py"), default_timeout=60).run()
    at.text_input(key="search").input("bro").run()
    assert at.dataframe[0].value["sweep"].tolist() == ["broken"]
    at.text_input(key="search").input("nothing-like-this").run()
    assert "No sweep name contains" in texts(at, "warning")


def test_sweeps_empty_store_says_how_to_start(empty_store_uri, store_env):
    at = run_page("sweeps", store_env, empty_store_uri)
    assert "No sweeps in this store yet" in texts(at, "info")
    assert "hpo run" in texts(at, "info")
    assert not at.dataframe


def test_unreachable_store_explains_instead_of_traceback(tmp_path, store_env):
    missing = f"sqlite:///{tmp_path / 'nowhere' / 'mlflow.db'}"
    for page in ("sweeps", "sweep", "trial", "compare"):
        at = run_page(page, store_env, missing)
        shown = texts(at, "error")
        assert "Cannot read the tracking store" in shown and "does not exist" in shown, page
    assert not (tmp_path / "nowhere").exists()  # a reader never creates a store


def test_not_an_mlflow_database(tmp_path, store_env):
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"")  # an empty file is a valid, empty SQLite database
    at = run_page("sweeps", store_env, f"sqlite:///{junk}")
    assert "not an MLflow tracking store" in texts(at, "error")


# -- Sweep -----------------------------------------------------------------------------------------------
def test_sweep_page_shows_winner_leaderboard_charts_and_diagnosis(sweep_store, store_env):
    at = run_page("sweep", store_env, sweep_store.uri, run=sweep_store.demo)
    shown = texts(at)
    assert "Sweep demo" in shown
    assert f"val_accuracy = {sweep_store.best_value:.4f}" in shown
    assert f"trial {sweep_store.best_trial}" in shown
    board = at.dataframe[0].value
    assert len(board) == 8  # the deleted ninth trial is not there
    assert board["trial"].iloc[0] == sweep_store.best_trial  # sorted best first (maximize)
    assert board["val_accuracy"].iloc[0] == pytest.approx(sweep_store.best_value)
    # the failed trial logged no verdict: the page diagnoses it as `hpo diagnose RUN_ID` does (NaN loss: diverged)
    assert set(board["verdict"]) == {"good_fit", "overfitting", "underfitting", "diverged"}
    assert board.loc[board["state"] == "failed", "verdict"].tolist() == ["diverged"]
    assert board.loc[board["state"] == "failed", "error"].str.contains("loss is NaN").all()
    assert {"lr", "batch_size", "optimizer", "dropout", "momentum"} <= set(board.columns)
    # best-so-far, verdicts, parallel coordinates, importance, slice, contour, learning curves
    assert plotly_count(at) == 7
    assert "2 of 7 trials overfit" in shown  # the logged sweep-level summary
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Failed"] == "1" and metrics["Stopped"] == "1" and metrics["Finished"] == "6"


def test_sweep_leaderboard_filters_by_status_and_verdict(sweep_store, store_env):
    at = run_page("sweep", store_env, sweep_store.uri, run=sweep_store.demo)
    at.multiselect(key="lb_status").set_value(["failed"]).run()
    assert at.dataframe[0].value["state"].tolist() == ["failed"]
    at.multiselect(key="lb_status").set_value(["finished", "stopped"]).run()
    at.multiselect(key="lb_verdict").set_value(["overfitting"]).run()
    board = at.dataframe[0].value
    assert board["verdict"].tolist() == ["overfitting", "overfitting"]
    assert sorted(board["trial"]) == [1, 2]


def test_sweep_page_by_name_and_importance(sweep_store, store_env):
    at = run_page("sweep", store_env, sweep_store.uri, sweep="demo")
    assert "Sweep demo" in texts(at, "title")
    # momentum is conditional (sgd only): Optuna cannot rate it, and the page says so
    assert "momentum" in texts(at, "caption")


def test_sweep_all_failed_explains(sweep_store, store_env):
    at = run_page("sweep", store_env, sweep_store.uri, run=sweep_store.broken)
    errors = texts(at, "error")
    assert "All 3 trials failed" in errors and "no module named 'mytask'" in errors
    assert len(at.dataframe[0].value) == 3
    assert plotly_count(at) == 0


def test_sweep_running_is_live(sweep_store, store_env):
    at = run_page("sweep", store_env, sweep_store.uri, run=sweep_store.live)
    assert "Live: this sweep is running" in texts(at, "info")
    board = at.dataframe[0].value
    running = board[board["state"] == "running"]
    assert len(running) == 1 and running["epochs"].iloc[0] == "3"  # best-so-far from the curve, no summary yet
    assert running["val_accuracy"].notna().all()


def test_sweep_deleted_or_unknown_run(sweep_store, store_env):
    at = run_page("sweep", store_env, sweep_store.uri, run=sweep_store.deleted)
    assert "deleted in MLflow" in texts(at, "warning")
    at = run_page("sweep", store_env, sweep_store.uri, run=sweep_store.trials[0])
    assert "is not a sweep" in texts(at, "warning")


def test_sweep_page_empty_store(empty_store_uri, store_env):
    at = run_page("sweep", store_env, empty_store_uri)
    assert "No sweeps in this store yet" in texts(at, "info")


# -- Trial -----------------------------------------------------------------------------------------------
def test_trial_page_shows_params_curves_verdict_and_advice(sweep_store, store_env):
    store_env.setenv("HPO_MLFLOW_UI_URL", "http://mlflow.example:5000")
    run_id = sweep_store.trials[1]
    at = run_page("trial", store_env, sweep_store.uri, run=run_id)
    shown = texts(at)
    assert "Trial 1 · finished" in shown
    assert "Verdict: overfitting" in shown and "80%" in shown
    assert "fixture advice for overfitting" in shown
    params = table_with(at, "parameter").set_index("parameter")["value"]
    assert params.to_dict() == {"batch_size": "32", "dropout": "0", "lr": "0.003", "optimizer": "adam"}
    assert table_with(at, "measure").set_index("measure").loc["val_loss_min_epoch", "value"] == "6"
    assert plotly_count(at) == 2  # loss and accuracy, each with the diagnosis drawn on
    link = at.get("link_button")[0].proto.url
    assert link.startswith("http://mlflow.example:5000/#/experiments/")
    assert link.endswith(f"/runs/{run_id}?workflowType=machine_learning")  # not the GenAI view
    assert [b.label for b in at.get("download_button")] == ["diagnosis.json"]


def test_trial_page_failed_and_stopped(sweep_store, store_env):
    at = run_page("trial", store_env, sweep_store.uri, run=sweep_store.trials[5])
    assert "This trial failed" in texts(at, "error") and "loss is NaN" in texts(at, "error")
    at = run_page("trial", store_env, sweep_store.uri, run=sweep_store.trials[4])
    assert "Stopped early by **asha** after 4 epochs" in texts(at, "warning")


def test_trial_page_deleted_run(sweep_store, store_env):
    at = run_page("trial", store_env, sweep_store.uri, run=sweep_store.deleted)
    assert "deleted in MLflow" in texts(at, "warning")


def test_trial_page_running_trial_is_diagnosed_so_far(sweep_store, store_env):
    at = run_page("trial", store_env, sweep_store.uri, run=sweep_store.running_trial)
    assert "Running" in texts(at, "info")
    assert plotly_count(at) == 2


# -- Compare ---------------------------------------------------------------------------------------------
def test_compare_highlights_differences(sweep_store, store_env):
    runs = f"{sweep_store.trials[0]},{sweep_store.trials[1]}"
    at = run_page("compare", store_env, sweep_store.uri, sweep=sweep_store.demo, runs=runs)
    table = table_with(at, "trial 0")
    assert list(table.columns) == ["trial 0", "trial 1"]
    assert table.loc["verdict"].tolist() == ["good_fit", "overfitting"]
    assert table.loc["lr"].tolist() == ["0.01", "0.003"]
    assert "the 3 parameters that differ" in texts(at, "caption")  # lr, batch_size, dropout; optimizer same
    assert plotly_count(at) == 1


def test_compare_needs_two_trials(sweep_store, store_env):
    at = run_page("compare", store_env, sweep_store.uri, sweep=sweep_store.demo, runs=sweep_store.trials[0])
    assert "Pick between 2 and 6 trials" in texts(at, "info")


# -- Navigation ------------------------------------------------------------------------------------------
def test_app_navigates_to_the_sweep_page(sweep_store, store_env):
    store_env.setenv("HPO_TRACKING_URI", sweep_store.uri)
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert not at.exception and "Sweeps" in texts(at, "title")
    at.query_params["run"] = sweep_store.demo
    at.switch_page("views/sweep.py").run()
    assert not at.exception
    assert "Sweep demo" in texts(at, "title")
