"""tracker.queries against real MLflow stores: SQLite read through SQLAlchemy, and an MLflow server."""

from __future__ import annotations

import importlib.util
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from waiting import http_body, wait_until

from tracker import schema
from tracker.errors import StoreUnavailable
from tracker.queries import RunNotFound, Store, parse_param

_BUILDER = Path(__file__).resolve().parents[1] / "dashboard" / "sweep_store.py"


def _builder():
    # The dashboard tests own the store builder; load it by path (tests/ dirs are not packages).
    spec = importlib.util.spec_from_file_location("hpo_test_sweep_store", _BUILDER)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    return _builder().build_store(tmp_path_factory.mktemp("queries-store"))


@pytest.mark.parametrize(
    ("text", "value"),
    [("0.001", 0.001), ("64", 64), ("true", True), ("False", False), ("None", None), ("adam", "adam"),
     ("[64, 64]", "[64, 64]"), ("1e-4", 1e-4)],
)  # fmt: skip
def test_parse_param(text, value):
    assert parse_param(text) == value and type(parse_param(text)) is type(value)


def test_list_sweeps_counts_and_best(built):
    sweeps = Store(built.uri).list_sweeps().set_index("sweep")
    assert list(sweeps.index) == ["live", "broken", "demo"]  # newest first
    demo = sweeps.loc["demo"]
    assert (demo.trials_finished, demo.trials_failed, demo.trials_stopped, demo.trials_running) == (6, 1, 1, 0)
    assert demo.best_metric == pytest.approx(built.best_value)
    assert demo.trials_total == 8 and demo.state == "finished" and demo.goal == "maximize"
    assert sweeps.loc["live", "best_metric"] > 0  # no sweep-level metric yet: best over its trials
    assert sweeps.loc["demo", "duration_s"] >= 0


def test_sweep_trials_and_histories(built):
    store = Store(built.uri)
    assert store.find_sweep("demo") == built.demo and store.find_sweep("nope") is None
    data = store.sweep(built.demo)
    trials = data.trials.set_index("trial_number")
    assert list(trials.index) == list(range(8)) and built.deleted not in set(data.trials["run_id"])
    assert trials.loc[4, "state"] == "stopped" and trials.loc[4, "early_stopped"]
    assert trials.loc[5, "state"] == "failed" and "loss is NaN" in trials.loc[5, "error"]
    assert trials.loc[1, "verdict"] == "overfitting" and trials.loc[1, "confidence"] == pytest.approx(0.8)
    assert data.best_trial["trial_number"] == built.best_trial
    # params come back typed; conditional momentum only where the optimizer is sgd
    assert trials.loc[0, "p.lr"] == 0.01 and trials.loc[0, "p.batch_size"] == 64
    assert trials.loc[0, "p.optimizer"] == "adam" and pd_isna(trials.loc[0, "p.momentum"])
    assert trials.loc[2, "p.momentum"] == 0.9
    # one long frame: 6 per-epoch keys, step = epoch, no summary metrics mixed in
    h = data.histories
    assert set(h["key"]) == set(schema.EPOCH_METRICS)
    one = h[(h["run_id"] == built.trials[0]) & (h["key"] == "val_loss")]
    assert list(one["step"]) == list(range(1, 13))
    assert len(h) == 6 * (12 * 5 + 4 + 2 + 6)  # five full runs, stopped@4, failed@2, diverged@6
    assert data.tags[schema.BEST_RUN_ID] == built.trials[built.best_trial]


def pd_isna(value) -> bool:
    return bool(pd.isna(value))


def test_running_sweep_uses_curve_so_far(built):
    data = Store(built.uri).sweep(built.live)
    running = data.trials[data.trials["state"] == "running"].iloc[0]
    assert running["run_id"] == built.running_trial and running["epochs_run"] == 3 and running["best"] > 0
    assert data.state == "running"


def test_fingerprint_changes_with_new_epochs(built):
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    store = Store(built.uri)
    before = store.sweep_fingerprint(built.live)
    assert store.sweep_fingerprint(built.live) == before
    MlflowClient(built.uri).log_batch(built.running_trial, metrics=[Metric("val_loss", 0.5, 0, 4)])
    assert store.sweep_fingerprint(built.live) != before


def test_trial_detail(built):
    trial = Store(built.uri).trial(built.trials[1])
    assert trial.params == {"lr": 0.003, "batch_size": 32, "optimizer": "adam", "dropout": 0.0}
    assert trial.state == "finished" and trial.trial_number == 1 and trial.parent_run_id == built.demo
    assert trial.artifacts == [schema.DIAGNOSIS_ARTIFACT]
    assert trial.diagnosis["verdict"] == "overfitting"
    curves = trial.curves()
    assert len(curves["val_loss"]) == 12 and curves["val_loss"][0] is not None


def test_missing_deleted_and_wrong_kind_runs(built):
    store = Store(built.uri)
    with pytest.raises(RunNotFound, match="deleted in MLflow"):
        store.trial(built.deleted)
    with pytest.raises(RunNotFound, match="never logged there"):
        store.sweep("0" * 32)
    with pytest.raises(RunNotFound, match="is not a sweep"):
        store.sweep(built.trials[0])


def test_unavailable_stores(tmp_path):
    with pytest.raises(StoreUnavailable, match="the file does not exist"):
        Store(f"sqlite:///{tmp_path / 'missing.db'}")
    assert not (tmp_path / "missing.db").exists()
    (tmp_path / "empty.db").write_bytes(b"")
    with pytest.raises(StoreUnavailable, match="not an MLflow tracking store"):
        Store(f"sqlite:///{tmp_path / 'empty.db'}")
    with pytest.raises(StoreUnavailable, match="does not answer"):
        Store("http://127.0.0.1:9")  # the discard port: nothing listens


def test_empty_store(tmp_path):
    uri = _builder().build_empty_store(tmp_path)
    store = Store(uri)
    assert store.list_sweeps().empty and store.find_sweep("x") is None


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow  # an mlflow server needs ~10-40 s to boot and warm up here
def test_mlflow_server_store_reads_the_same(built, tmp_path):
    """Through a real ``mlflow server`` (REST search + bulk history endpoint) the frames match SQL's."""
    port = _free_port()
    cmd = [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", built.uri, "--host", "127.0.0.1",
           "--port", str(port), "--workers", "1"]  # fmt: skip
    log = (tmp_path / "server.log").open("wb")
    server = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_until(lambda: http_body(f"http://127.0.0.1:{port}/health"), 60, interval_s=0.3, process=server,
                   message=lambda: "mlflow server answers: " + (tmp_path / "server.log").read_text()[-2000:])
        http = Store(f"http://127.0.0.1:{port}")
        sql = Store(built.uri)
        a, b = http.list_sweeps(), sql.list_sweeps()
        cols = ["run_id", "sweep", "state", "trials_finished", "trials_failed", "trials_stopped", "best_metric"]
        pd.testing.assert_frame_equal(a[cols], b[cols])
        sa, sb = http.sweep(built.demo), sql.sweep(built.demo)
        assert sa.trials[["run_id", "state", "verdict", "best", "p.lr"]].equals(
            sb.trials[["run_id", "state", "verdict", "best", "p.lr"]]
        )
        key = ["run_id", "key", "step"]
        assert (
            sa.histories.sort_values(key)
            .reset_index(drop=True)
            .equals(sb.histories.sort_values(key).reset_index(drop=True))
        )
        assert http.trial(built.trials[1]).diagnosis["verdict"] == "overfitting"
        with pytest.raises(RunNotFound):
            http.trial(built.deleted)
        # a server's latest metrics carry no step: the live page's token must still move with a new epoch
        from mlflow.entities import Metric
        from mlflow.tracking import MlflowClient

        before = http.sweep_fingerprint(built.live)
        assert http.sweep_fingerprint(built.live) == before
        MlflowClient(f"http://127.0.0.1:{port}").log_batch(built.running_trial,
                                                           metrics=[Metric("val_loss", 0.123, 0, 9)])
        assert http.sweep_fingerprint(built.live) != before
    finally:
        server.terminate()
        try:
            server.wait(timeout=15)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        log.close()


def test_sweep_without_trials_reads_as_empty(tmp_path):
    """A sweep interrupted before its first trial started: no children, no histories."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("cut", artifact_location=(tmp_path / "artifacts").as_uri())
    tags = {**schema.kind_tags(schema.KIND_SWEEP), schema.SWEEP: "cut", schema.METRIC: "val_loss",
            schema.GOAL: "minimize", schema.SWEEP_STATE: "interrupted"}
    parent = client.create_run(exp, run_name="cut", tags=tags).info.run_id
    client.set_terminated(parent, status="KILLED")
    store = Store(uri)
    assert store.find_sweep("cut") == parent
    data = store.sweep(parent)
    assert data.trials.empty and data.histories.empty
    assert data.state == "interrupted"
    assert data.best_trial is None


def _sweep_of(folder: Path, trials: int) -> tuple[str, object, str, list[str]]:
    """A store in ``folder`` with one sweep (metric val_loss, minimize) of ``trials`` empty trial runs."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{folder / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("s", artifact_location=(folder / "artifacts").as_uri())
    sweep_tags = {**schema.kind_tags(schema.KIND_SWEEP), schema.SWEEP: "s", schema.METRIC: "val_loss",
                  schema.GOAL: "minimize"}
    parent = client.create_run(exp, run_name="s", tags=sweep_tags).info.run_id
    ids = []
    for n in range(trials):
        tags = {**schema.kind_tags(schema.KIND_TRIAL), schema.PARENT_RUN_ID: parent, schema.TRIAL_NUMBER: str(n)}
        ids.append(client.create_run(exp, run_name=f"t{n}", tags=tags).info.run_id)
    return uri, client, parent, ids


@pytest.mark.parametrize(("columnar", "coded"), [(True, True), (False, True), (True, False)],
                         ids=["adbc", "sqlite3", "ids-in-list"])
def test_histories_keep_the_last_write_and_nan(tmp_path, monkeypatch, columnar, coded):
    """A step logged twice reads as its later write, NaN as NaN, on both SQLite readers (Arrow through ADBC,
    and sqlite3 where ADBC cannot read) and with the runs' ids in an IN list (the query for databases
    without a plain VALUES table), in a folder whose name needs quoting in a URI."""
    from mlflow.entities import Metric

    import tracker._sql_reads as sql_reads

    folder = tmp_path / "a store #1"
    folder.mkdir()
    uri, client, parent, trials = _sweep_of(folder, 2)
    client.log_batch(trials[0], metrics=[Metric("val_loss", 0.9, 1000, 1), Metric("val_loss", 0.7, 2000, 2),
                                         Metric("val_loss", 0.5, 3000, 2),  # epoch 2 again, a retried write
                                         Metric("train_loss", math.nan, 1000, 1)])  # fmt: skip
    client.log_batch(trials[1], metrics=[Metric("val_loss", 0.8, 1000, 1)])
    if not coded:
        monkeypatch.setattr(sql_reads, "_VALUES_DIALECTS", ())
    if not columnar:
        monkeypatch.setattr(sql_reads, "arrow_columns", lambda *args: None)
    else:  # the queries the pages send, with and without a key filter, are read as Arrow, not by the fallback
        from tracker._arrow_sqlite import arrow_columns

        for keys in (None, ["val_loss"]):
            for query in (sql_reads._histories_query(trials, 0, keys), sql_reads._histories_by_id(trials, keys)):
                assert arrow_columns(folder / "mlflow.db", query) is not None
    h = Store(uri).sweep(parent).histories
    rows = {(r, k, s): v for r, k, s, v in zip(h["run_id"], h["key"], h["step"], h["value"], strict=True)}
    assert len(h) == 4 and rows[(trials[0], "val_loss", 2)] == 0.5 and rows[(trials[1], "val_loss", 1)] == 0.8
    assert math.isnan(rows[(trials[0], "train_loss", 1)])
    assert list(h["run_id"].cat.categories) == sorted(trials)


def test_sweep_skips_the_histories_of_a_prefix(tmp_path):
    """``Store.sweep(skip=...)`` leaves out those keys' histories; the other histories and the trials are the same."""
    from mlflow.entities import Metric

    uri, client, parent, (trial,) = _sweep_of(tmp_path, 1)
    client.log_batch(trial, metrics=[Metric(k, v / step, 1000 * step, step) for step in (1, 2, 3)
                                     for k, v in (("val_loss", 1.0), ("signals/grad_norm", 5.0), ("signals/x", 2.0))])
    whole, skipped = Store(uri).sweep(parent), Store(uri).sweep(parent, skip=("signals/",))
    assert set(whole.histories["key"]) == {"val_loss", "signals/grad_norm", "signals/x"}
    assert set(skipped.histories["key"]) == {"val_loss"}
    assert skipped.histories["value"].tolist() == whole.histories.query("key == 'val_loss'")["value"].tolist()
    pd.testing.assert_frame_equal(whole.trials.drop(columns="duration_s"), skipped.trials.drop(columns="duration_s"))
    only_signals = Store(uri).sweep(parent, skip=("signals/", "val_"))
    assert only_signals.histories.empty and len(only_signals.trials) == 1


def test_first_curves_reads_the_trials_a_page_draws_first(built):
    """``first_curves``: running trials, trials without a logged verdict and the best few; the rest on request."""
    from tracker.queries import FIRST_CURVES

    store = Store(built.uri)
    whole, first = store.sweep(built.demo), store.sweep(built.demo, first_curves=True)
    pd.testing.assert_frame_equal(whole.trials.drop(columns="duration_s"), first.trials.drop(columns="duration_s"))
    trials = whole.trials
    unjudged = set(trials.loc[trials["verdict"].isna(), "run_id"])
    best = trials.sort_values("best", ascending=not whole.maximize).dropna(subset=["best"])["run_id"][:FIRST_CURVES]
    assert first.curves_of == frozenset(unjudged | set(best)) and whole.curves_of is None
    assert set(first.histories["run_id"]) <= first.curves_of
    rest = sorted(set(trials["run_id"]) - first.curves_of)
    assert rest  # the demo sweep has more trials than that
    key = ["run_id", "key", "step"]
    read_later = store.histories(rest).astype({"run_id": str, "key": str}).sort_values(key).reset_index(drop=True)
    expected = whole.histories[whole.histories["run_id"].isin(rest)].astype({"run_id": str, "key": str})
    pd.testing.assert_frame_equal(read_later, expected.sort_values(key).reset_index(drop=True))
    live = store.sweep(built.live, first_curves=True)
    assert built.running_trial in live.curves_of
    # every trial's latest value of the metric comes with the trials, read curves or not
    h = whole.histories[whole.histories["key"] == whole.metric].sort_values("step")
    last = h.groupby("run_id", observed=True)["value"].last()
    latest = first.trials.set_index("run_id")["latest"]
    assert len(last) >= 6 and all(latest[r] == v or (pd.isna(v) and pd.isna(latest[r])) for r, v in last.items())
