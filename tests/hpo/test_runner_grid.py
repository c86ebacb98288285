"""End to end: a real grid sweep (Ray + MLflow SQLite) with ASHA and one diverging trial, read back.

One run of ``hpo run --json`` (the session fixture ``small_sweep_run``) serves every test here.
"""

from __future__ import annotations

import json
import math

import pytest
from sweep_reads import StoredTrial, all_runs, stored_trials

from hpo import space
from hpo.cli import main
from hpo.loading import load_sweep
from tracker import schema
from trainers import signal_names as signal
from trainers.tasks import TASKS

pytestmark = pytest.mark.slow

EPOCHS = 6  # trainer.epochs of SMALL_SWEEP_YAML
TRIALS = 6  # sgd: 2 lr x 2 weight_decay, adam: 2 lr


def _combo(params: dict[str, object]) -> tuple[tuple[str, str], ...]:
    """A trial's tuned values as comparable text, the way MLflow stores params."""
    tuned = ("optimizer", "lr", "momentum", "weight_decay")
    return tuple(sorted((k, _text(v)) for k, v in params.items() if k in tuned))


def _text(value: object) -> str:
    return str(value) if not isinstance(value, float) else repr(value)


@pytest.fixture(scope="module")
def trials(small_sweep_store) -> list[StoredTrial]:
    uri, parent, _ = small_sweep_store
    return stored_trials(uri, parent)


def _by(trials: list[StoredTrial], **values: str) -> list[StoredTrial]:
    return [t for t in trials if all(t.params.get(k) == v for k, v in values.items())]


def test_run_exits_0_and_prints_one_json_document(small_sweep_run, small_sweep_store) -> None:
    assert small_sweep_run.returncode == 0, small_sweep_run.stderr[-2000:]
    doc = json.loads(small_sweep_run.stdout)  # the whole stdout is one document
    assert {"sweep", "parent_run_id", "tracking_uri", "best", "trials"} <= set(doc)
    assert doc["sweep"] == "small"
    assert doc["tracking_uri"] == small_sweep_run.tracking_uri
    assert set(doc["best"]) == {"run_id", "params", "metric", "test", "test_note"}
    assert doc["best"]["test_note"] is None and "test_accuracy" in doc["best"]["test"]
    assert len(doc["trials"]) == TRIALS
    for trial in doc["trials"]:
        assert {"run_id", "status", "params", "metric"} <= set(trial)
    # the progress and the leaderboard go to stderr, not into the JSON
    assert "trials 6/6 done" in small_sweep_run.stderr


def test_grid_runs_each_point_exactly_once(small_sweep_run, trials) -> None:
    config, _ = load_sweep(small_sweep_run.sweep_file)
    expected = [_combo(point) for point in space.grid_points(config)]
    assert len(expected) == TRIALS == len(set(expected))
    stored = [_combo(t.params) for t in trials]
    assert sorted(stored) == sorted(expected)


def test_store_holds_one_parent_and_a_child_per_trial(small_sweep_store, trials) -> None:
    uri, parent_id, result = small_sweep_store
    runs = all_runs(uri)
    parents = [r for r in runs if r.data.tags.get(schema.RUN_KIND) == schema.KIND_SWEEP]
    assert [p.info.run_id for p in parents] == [parent_id]
    assert parents[0].info.status == "FINISHED"
    assert parents[0].data.tags[schema.SWEEP_STATE] == "finished"
    children = [r for r in runs if r.data.tags.get(schema.PARENT_RUN_ID) == parent_id]
    assert len(children) == len(runs) - 1 == TRIALS
    assert all(r.data.tags[schema.RUN_KIND] == schema.KIND_TRIAL for r in children)
    assert all(r.data.tags[schema.SCHEMA_VERSION] == schema.CURRENT_SCHEMA_VERSION for r in [*parents, *children])
    in_order = sorted(result["trials"], key=lambda t: t["trial_number"])
    assert [t.run_id for t in trials] == [t["run_id"] for t in in_order]
    assert sorted(int(t.tags[schema.TRIAL_NUMBER]) for t in trials) == list(range(TRIALS))


def test_trial_params_are_stored_and_conditional_ones_only_where_active(small_sweep_store, trials) -> None:
    result = {t["run_id"]: t for t in small_sweep_store.result_json["trials"]}
    for trial in trials:
        assert trial.params["epochs"] == str(EPOCHS)
        assert trial.params["hidden"] == "32"
        assert trial.params["train_fraction"] == "0.3"
        assert trial.params["seed"] == trial.params["split_seed"] == "0"
        assert trial.params == {k: _text(v) for k, v in result[trial.run_id]["params"].items()}
        on_sgd = trial.params["optimizer"] == "sgd"
        assert ("momentum" in trial.params) is on_sgd
        assert ("weight_decay" in trial.params) is on_sgd
    assert len(_by(trials, optimizer="sgd")) == 4
    assert len(_by(trials, optimizer="adam")) == 2


def test_one_metric_point_per_epoch_per_metric(trials, small_sweep_store) -> None:
    summary = {schema.EPOCHS_RUN, schema.BEST_PREFIX + "val_accuracy", schema.FINAL_PREFIX + "val_accuracy"}
    winner = small_sweep_store.result_json["best"]
    for trial in trials:
        epochs = int(trial.metrics[schema.EPOCHS_RUN])
        assert trial.points[schema.EPOCHS_RUN] == [(0, trial.points[schema.EPOCHS_RUN][0][1])]
        if trial.status == "FAILED":
            assert epochs == 0
            assert set(trial.points) == {schema.EPOCHS_RUN}
            continue
        # what the task reports, and nothing Ray adds (time_total_s, hpo_best, ...)
        reported = set(TASKS["digits"].metrics)
        tested = set(winner["test"]) if trial.run_id == winner["run_id"] else set()  # after the search, once
        signals = {key for key in trial.points if signal.is_signal(key)}  # the training signals, on by default
        assert {signal.GRAD_NORM, signal.WEIGHT_NORM, signal.DEAD_RELU} <= signals, sorted(trial.points)
        at_init = signals & {signal.INIT_DEAD_RELU, signal.INIT_SATURATED, signal.INIT_GRAD_RATIO}
        assert set(trial.points) == reported | summary | tested | signals, trial.params
        assert all(trial.points[key] == [(0, trial.points[key][0][1])] for key in tested)
        assert all([step for step, _ in trial.points[key]] == [1] for key in at_init)  # logged with epoch 1
        for key in reported | (signals - at_init):
            steps = [step for step, _ in trial.points[key]]
            assert steps == list(range(1, epochs + 1)), (key, trial.params)
        stamps = [stamp for _, stamp in trial.points["val_loss"]]
        assert stamps == sorted(stamps)
        # stamped when the epoch ended, in ms: never before the trial's run was created
        assert stamps[0] >= trial.start_time_ms, (stamps[0], trial.start_time_ms)


def test_diverging_trial_is_failed_with_its_error_and_the_others_go_on(small_sweep_store, trials) -> None:
    failed = [t for t in trials if t.status == "FAILED"]
    assert [(t.params["optimizer"], t.params["lr"], t.params["weight_decay"]) for t in failed] == [
        ("sgd", "0.05", "10000.0")
    ]
    error = failed[0].tags[schema.ERROR]
    assert "Diverged: training loss became nan at epoch 1" in error
    assert "\x1b[" not in error  # no terminal colour codes in the tag
    doc = {t["run_id"]: t for t in small_sweep_store.result_json["trials"]}[failed[0].run_id]
    assert doc["status"] == "FAILED"
    assert doc["metric"] is None
    assert doc["error"] == "trainers.loop.Diverged: training loss became nan at epoch 1 (lr=0.05)"
    assert sorted(t.status for t in trials if t is not failed[0]) == ["FINISHED"] + ["KILLED"] * 4


def test_asha_stops_the_trials_that_lag(trials) -> None:
    slow = _by(trials, lr="1e-06")
    assert len(slow) == 3
    for trial in slow:
        assert trial.status == "KILLED"
        assert trial.tags[schema.EARLY_STOPPED] == "true"
        assert trial.tags[schema.STOPPED_BY] == "asha"
        assert int(trial.metrics[schema.EPOCHS_RUN]) in (2, 4)  # ASHA's rungs: grace 2, reduction factor 2
        assert trial.metrics["best_val_accuracy"] < 0.2  # chance level on 10 classes
    (finished,) = [t for t in trials if t.status == "FINISHED"]
    assert (finished.params["optimizer"], finished.params["lr"]) == ("adam", "0.05")
    assert int(finished.metrics[schema.EPOCHS_RUN]) == EPOCHS
    assert schema.EARLY_STOPPED not in finished.tags


def test_best_is_the_finished_trial_on_the_parent_and_in_json(small_sweep_store, trials) -> None:
    uri, parent_id, result = small_sweep_store
    (finished,) = [t for t in trials if t.status == "FINISHED"]
    assert result["best"]["run_id"] == finished.run_id
    assert result["best"]["params"]["optimizer"] == "adam"
    assert math.isclose(result["best"]["metric"], finished.metrics["best_val_accuracy"])
    assert result["best"]["metric"] > 0.7
    (parent,) = [r for r in all_runs(uri) if r.info.run_id == parent_id]
    assert parent.data.tags[schema.BEST_RUN_ID] == finished.run_id
    assert parent.data.params["best.optimizer"] == "adam"
    assert parent.data.metrics["trials_failed"] == 1
    assert parent.data.metrics["trials_stopped"] == 4


def test_hpo_best_lists_top_trials_best_first(small_sweep_store, capsys: pytest.CaptureFixture[str]) -> None:
    uri, parent_id, result = small_sweep_store
    assert main(["best", "small", "--json", "--top", "3", "--tracking-uri", uri]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["parent_run_id"] == parent_id
    top = doc["top"]
    assert len(top) == 3
    assert top[0]["run_id"] == result["best"]["run_id"]
    metrics = [row["metric"] for row in top]
    assert metrics == sorted(metrics, reverse=True)  # maximize: best first
    failed = {t["run_id"] for t in result["trials"] if t["status"] == "FAILED"}
    assert not failed & {row["run_id"] for row in top}


def test_hpo_best_names_the_sweeps_there_when_the_name_is_unknown(
    small_sweep_store, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["best", "smal", "--tracking-uri", small_sweep_store.tracking_uri]) == 2
    err = capsys.readouterr().err
    assert "no sweep named 'smal'" in err
    assert "sweeps there: small" in err
