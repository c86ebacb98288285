"""Seed confirmation on the dashboard, run by AppTest against a real MLflow store: the sweep page's
statistics table, verdict and mean learning curves with a +-1 std band and the diagnosis of the mean
curve; the trial page's links to its confirmation runs and back."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from scipy import stats
from sweep_store import _experiment, _log_curves, _parent, _trial
from test_pages import run_page, table_with, texts
from test_pareto_page import _figure, _values

from hpo.confirm import Candidate, ConfirmRun, summary_doc
from hpo.results import TrialRecord
from tracker import schema

# trial number -> (lr, search best, val_accuracy per epoch of each of its two confirm runs)
TRIALS = {
    0: (0.01, 0.93, [[0.70, 0.80, 0.90], [0.60, 0.70, 0.80]]),
    1: (0.10, 0.91, [[0.50, 0.60, 0.70], [0.50, 0.62, 0.66]]),
}
SEEDS = {0: [11, 12], 1: [13, 14]}


def _build(root: Path) -> tuple[str, str, dict[int, str], dict[int, list[str]]]:
    from mlflow.entities import Metric
    from mlflow.tracking import MlflowClient

    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    client = MlflowClient(uri)
    exp = _experiment(client, "confirmed", root)
    parent = _parent(client, exp, "confirmed", "val_accuracy", "finished", len(TRIALS))
    now = int(time.time() * 1000)
    trials, confirm_ids, cands, runs = {}, {}, [], []
    for number, (lr, best, curves) in TRIALS.items():
        run_id = _trial(client, exp, parent, number, {"lr": lr})
        _log_curves(client, run_id, {"val_accuracy": [best] * 3, "val_loss": [1 - best] * 3}, 3)
        client.log_batch(run_id, metrics=[Metric("best_val_accuracy", best, now, 0)])
        client.set_terminated(run_id, "FINISHED")
        trials[number] = run_id
        cands.append(Candidate(TrialRecord(f"t{number}", number, run_id, {"lr": lr}, "FINISHED", best=best),
                               number + 1, SEEDS[number]))
        confirm_ids[number] = []
        for seed, accuracy in zip(SEEDS[number], curves, strict=True):
            tags = {schema.PARENT_RUN_ID: parent, **schema.kind_tags(schema.KIND_CONFIRM), schema.CONFIRMS: run_id,
                    schema.CONFIRM_SEED: str(seed), schema.TRIAL_NUMBER: str(len(runs))}
            confirm = client.create_run(exp, run_name=f"confirm-{seed}", tags=tags).info.run_id
            _log_curves(client, confirm, {"val_accuracy": accuracy, "train_accuracy": [a + 0.05 for a in accuracy],
                                          "val_loss": [1 - a for a in accuracy],
                                          "train_loss": [0.95 - a for a in accuracy]}, 3)
            client.log_batch(confirm, metrics=[Metric("best_val_accuracy", max(accuracy), now, 0)])
            client.set_terminated(confirm, "FINISHED")
            confirm_ids[number].append(confirm)
            runs.append(ConfirmRun(confirm, run_id, seed, "FINISHED", max(accuracy),
                                   {"test_accuracy": max(accuracy) - 0.02}))
    doc = summary_doc(cands, runs, "val_accuracy", "maximize", "test_accuracy")
    client.log_dict(parent, doc, schema.CONFIRM_ARTIFACT)
    client.set_tag(parent, schema.CONFIRM_STATE, "done")
    client.set_terminated(parent, "FINISHED")
    return uri, parent, trials, confirm_ids


@pytest.fixture(scope="module")
def confirmed_store(tmp_path_factory: pytest.TempPathFactory):
    return _build(tmp_path_factory.mktemp("confirm-store"))


def test_sweep_page_shows_intervals_verdict_and_mean_curves_with_a_band(confirmed_store, store_env) -> None:
    uri, parent, _, _ = confirmed_store
    at = run_page("sweep", store_env, uri, run=parent)
    shown = texts(at)
    assert "Seed confirmation" in texts(at, "subheader")
    p = stats.ttest_ind([0.90, 0.80], [0.70, 0.66], equal_var=False).pvalue  # each run's best epoch
    assert f"trial 0 vs trial 1: not distinguishable at 5% (Welch's t-test, p = {p:.3g})" in shown
    table = table_with(at, "val_accuracy mean ± std")
    assert table["trial"].tolist() == [0, 1]  # mean 0.85 beats 0.68
    assert table["val_accuracy mean ± std"].tolist() == ["0.85 ± 0.07071", "0.68 ± 0.02828"]
    assert table["val_accuracy 95% interval"].tolist()[0] == "[0.2147, 1.485]"  # 0.85 -+ 12.706 * 0.05
    assert table["test_accuracy mean ± std"].tolist() == ["0.83 ± 0.07071", "0.66 ± 0.02828"]
    assert "Diagnosis of the mean curve" in shown
    figure = _figure(at, "Mean accuracy over 2 seeds (±1 std)")
    mean_val = next(t for t in figure.data if t.name == "val accuracy")
    assert _values(mean_val.y) == pytest.approx([0.65, 0.75, 0.85])
    band = next(t for t in figure.data if t.name == "val accuracy ±1 std")
    assert _values(band.y)[:3] == pytest.approx([0.65 + 0.0707107, 0.75 + 0.0707107, 0.85 + 0.0707107])
    assert any(s.x0 == 3 and s.type == "line" for s in figure.layout.shapes)  # the gap drawn on the mean curve


def test_trial_page_links_to_its_confirmation_runs_and_back(confirmed_store, store_env) -> None:
    uri, _, trials, confirm_ids = confirmed_store
    at = run_page("trial", store_env, uri, run=trials[0])
    shown = texts(at)
    assert "Rank **1** of the confirmed configurations: val_accuracy 0.85 ± 0.07071 over 2 fresh seeds" in shown
    for run_id, seed in zip(confirm_ids[0], SEEDS[0], strict=True):
        assert f"[seed {seed} · finished](/trial?run={run_id})" in shown
    at = run_page("trial", store_env, uri, run=confirm_ids[1][0])
    assert f"[Open the trial it confirms](/trial?run={trials[1]})" in texts(at)
