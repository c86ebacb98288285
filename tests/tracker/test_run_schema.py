"""The run schema (tracker.schema, docs/run_schema.md): runs carry their kind, readers select by it.

A child run of another kind under a sweep (a confirmation run, say) must change no view: not the
trials ``Store.sweep`` reads, not ``hpo best --json``, not the dashboard's sweep page. Stores written
before ``hpo.run_kind`` (schema 1: ``hpo.role`` only) still read the same.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from mlflow.entities import Metric, Param
from mlflow.tracking import MlflowClient
from streamlit.testing.v1 import AppTest

from tracker import schema
from tracker._backend import ReadBackend
from tracker._mlflow_reads import ClientReads
from tracker._sql_reads import SqlReads
from tracker.queries import Store

VIEWS = Path(__file__).resolve().parents[2] / "dashboard" / "views"
STABLE = ["run_id", "trial_number", "status", "state", "early_stopped", "verdict", "best", "epochs_run"]


def _copy_store(uri: str, folder: Path) -> str:
    """A consistent copy of a (WAL-mode) SQLite store; its runs keep their artifact locations."""
    source = sqlite3.connect(uri[len("sqlite:///") :])
    folder.mkdir(parents=True, exist_ok=True)
    target = sqlite3.connect(folder / "mlflow.db")
    with target:
        source.backup(target)
    source.close()
    target.close()
    return f"sqlite:///{folder / 'mlflow.db'}"


def _add_child(uri: str, parent: str, kind: str, best: float) -> str:
    """A finished child run of ``kind`` under ``parent`` that looks better than every trial."""
    client = MlflowClient(uri)
    experiment = client.get_run(parent).info.experiment_id
    tags = {schema.PARENT_RUN_ID: parent, schema.RUN_KIND: kind, schema.SCHEMA_VERSION: schema.CURRENT_SCHEMA_VERSION,
            schema.TRIAL_NUMBER: "99"}  # fmt: skip
    run = client.create_run(experiment, run_name=f"{kind}-0", tags=tags).info.run_id
    client.log_batch(run, metrics=[Metric("val_accuracy", best, 0, 1), Metric("best_val_accuracy", best, 0, 0),
                                   Metric("epochs_run", 1.0, 0, 0)],
                     params=[Param("optimizer", "adam"), Param("lr", "0.05")])  # fmt: skip
    client.set_terminated(run, "FINISHED")
    return run


def _hpo_best(run_hpo, uri: str, name: str, cwd: Path) -> dict:
    done = run_hpo(["best", name, "--json", "--tracking-uri", uri], cwd=cwd)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def _sweep_page(uri: str, parent: str, monkeypatch: pytest.MonkeyPatch) -> pd.DataFrame:
    monkeypatch.setenv("HPO_TRACKING_URI", uri)
    at = AppTest.from_file(str(VIEWS / "sweep.py"), default_timeout=90)
    at.query_params["run"] = parent
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    return at.dataframe[0].value


def test_a_child_run_of_another_kind_changes_no_view(small_sweep_store, run_hpo, tmp_path, monkeypatch):
    uri, parent, result = small_sweep_store
    copy = _copy_store(uri, tmp_path / "copy")
    before = Store(copy)
    trials_before, sweeps_before = before.sweep(parent).trials, before.list_sweeps()
    best_before = _hpo_best(run_hpo, copy, result["sweep"], tmp_path)
    page_before = _sweep_page(copy, parent, monkeypatch)

    extra = _add_child(copy, parent, schema.KIND_CONFIRM, best=1.0)

    after = Store(copy)
    data = after.sweep(parent)
    assert extra not in set(data.trials["run_id"]) and extra not in set(data.histories["run_id"].astype(str))
    pd.testing.assert_frame_equal(data.trials[STABLE], trials_before[STABLE])
    cols = ["run_id", "sweep", "state", *(f"trials_{s}" for s in ("finished", "failed", "stopped", "running")),
            "best_metric"]  # fmt: skip
    pd.testing.assert_frame_equal(after.list_sweeps()[cols], sweeps_before[cols])
    assert _hpo_best(run_hpo, copy, result["sweep"], tmp_path) == best_before
    assert extra not in {t["run_id"] for t in best_before["top"]}
    page_after = _sweep_page(copy, parent, monkeypatch)
    pd.testing.assert_frame_equal(page_after.reset_index(drop=True), page_before.reset_index(drop=True))
    # the run itself is still there to read, as what it is
    assert after.trial(extra).kind == schema.KIND_CONFIRM


def test_runs_the_sweep_wrote_carry_kind_and_schema_version(small_sweep_store):
    uri, parent, result = small_sweep_store
    client = MlflowClient(uri)
    tags = client.get_run(parent).data.tags
    assert (tags[schema.RUN_KIND], tags[schema.SCHEMA_VERSION]) == ("sweep", schema.CURRENT_SCHEMA_VERSION)
    assert schema.LEGACY_ROLE not in tags
    for trial in result["trials"]:
        tags = client.get_run(trial["run_id"]).data.tags
        assert (tags[schema.RUN_KIND], tags[schema.SCHEMA_VERSION]) == ("trial", schema.CURRENT_SCHEMA_VERSION)
        assert tags[schema.PARENT_RUN_ID] == parent


def _legacy_store(root: Path) -> tuple[str, str, list[str]]:
    """A schema-1 store (``hpo.role``, no ``hpo.run_kind``): a sweep, two trials and an MLflow-nested
    child of no kind (a user's own nested run), which is not a trial."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = client.create_experiment("old", artifact_location=(root / "artifacts").as_uri())
    parent = client.create_run(exp, run_name="old", tags={
        schema.LEGACY_ROLE: "sweep", schema.SWEEP: "old", schema.METRIC: "val_loss", schema.GOAL: "minimize",
        schema.SWEEP_STATE: "finished"}).info.run_id  # fmt: skip
    trials = []
    for number, loss in enumerate((0.5, 0.3)):
        run = client.create_run(exp, run_name=f"trial-{number}", tags={
            schema.PARENT_RUN_ID: parent, schema.LEGACY_ROLE: "trial", schema.TRIAL_NUMBER: str(number)}).info.run_id
        client.log_batch(run, metrics=[Metric("val_loss", loss, 0, 1), Metric("best_val_loss", loss, 0, 0)])
        client.set_terminated(run, "FINISHED")
        trials.append(run)
    stray = client.create_run(exp, run_name="nested", tags={schema.PARENT_RUN_ID: parent}).info.run_id
    client.log_batch(stray, metrics=[Metric("best_val_loss", 0.01, 0, 0)])
    client.set_terminated(parent, "FINISHED")
    return uri, parent, trials


def test_stores_written_before_run_kinds_read_the_same(tmp_path):
    uri, parent, trials = _legacy_store(tmp_path)
    store = Store(uri)
    sweeps = store.list_sweeps()
    assert sweeps["run_id"].tolist() == [parent] and sweeps.loc[0, "trials_finished"] == 2
    assert sweeps.loc[0, "best_metric"] == pytest.approx(0.3)
    data = store.sweep(parent)
    assert data.trials["run_id"].tolist() == trials  # the child of no kind is no trial
    assert store.trial(trials[0]).kind == schema.KIND_TRIAL


@pytest.mark.parametrize("backend", [SqlReads, ClientReads])
def test_both_backends_select_by_kind_and_answer_in_any_order(backend, tmp_path):
    """SQL and the MLflow client (here on the same SQLite file) implement one interface alike, and no
    answer depends on what was read before: a first read needs no earlier search, a second sees new tags."""
    uri, parent, trials = _legacy_store(tmp_path)
    extra = _add_child(uri, parent, schema.KIND_CONFIRM, best=0.0)
    db = backend(uri)
    assert isinstance(db, ReadBackend)
    tags = db.key_values("tags", [parent])  # before any search of the runs
    assert dict(zip(tags["key"], tags["value"], strict=True))[schema.SWEEP_STATE] == "finished"
    assert db.sweep_runs()["run_id"].tolist() == [parent]
    assert sorted(db.child_runs([parent], schema.KIND_TRIAL)["run_id"]) == sorted(trials)
    assert db.child_runs([parent], schema.KIND_CONFIRM)["run_id"].tolist() == [extra]
    assert sorted(db.child_runs([parent, "0" * 32], schema.KIND_TRIAL)["run_id"]) == sorted(trials)
    MlflowClient(uri).set_tag(parent, schema.SWEEP_STATE, "interrupted")
    tags = db.key_values("tags", [parent], [schema.SWEEP_STATE])
    assert tags["value"].tolist() == ["interrupted"]
    latest = db.latest_metrics(trials, ["best_val_loss"])
    assert sorted(latest["value"]) == [0.3, 0.5]
