"""A real sweep with ``confirm:`` (local Ray, SQLite MLflow): k x n confirm runs with distinct seeds,
intervals that a recomputation from the stored runs reproduces, equal configurations reported "not
distinguishable", the winner as the sweep's best; ``hpo confirm`` keeps finished confirm runs."""

from __future__ import annotations

import json
import math
import re
import statistics
from pathlib import Path

import pytest
from scipy import stats
from sweep_reads import client

from hpo.cli import main
from tracker import schema

# Arms a and b are the same configuration under two names: the trainer ignores the seed for them and
# reports 0.9. Arm c reports 0.5 plus seed noise: its interval is not a point.
TRAIN_PY = """\
import random


def train(config, report):
    value = 0.9 if config["arm"] in ("a", "b") else 0.5 + random.Random(config["seed"]).gauss(0.0, 0.05)
    for epoch in range(1, config["epochs"] + 1):
        report({"epoch": epoch, "val_accuracy": value})
"""
SWEEP_YAML = """\
name: armed
method: grid
metric: {name: val_accuracy, goal: maximize}
budget: {max_concurrent: 2}
seed: 3
trainer: {function: "arms:train", epochs: 1, reports: [val_accuracy]}
parameters:
  arm: {values: [a, b, c]}
confirm: {top: 3, seeds: 2}
"""


@pytest.fixture(scope="module")
def armed(sweep_runner, tmp_path_factory):
    folder = tmp_path_factory.mktemp("armed")
    (folder / "arms.py").write_text(TRAIN_PY, encoding="utf-8")
    run = sweep_runner(folder, SWEEP_YAML)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def _confirm_runs(uri: str, parent: str) -> list:
    mlflow = client(uri)
    runs = mlflow.search_runs([mlflow.get_run(parent).info.experiment_id],
                              filter_string=f"tags.`{schema.PARENT_RUN_ID}` = '{parent}'", max_results=100)
    return [r for r in runs if r.data.tags.get(schema.RUN_KIND) == schema.KIND_CONFIRM]


def test_confirm_reruns_top_k_with_n_distinct_recorded_seeds(armed) -> None:
    result = armed.result()
    trials = {t["params"]["arm"]: t["run_id"] for t in result["trials"]}
    assert len(result["trials"]) == 3 and len(result["confirm"]) == 6  # listed apart
    stored = _confirm_runs(armed.tracking_uri, result["parent_run_id"])
    assert sorted(r.info.run_id for r in stored) == sorted(r["run_id"] for r in result["confirm"])
    assert all(r.info.status == "FINISHED" for r in stored)
    per_trial = {run_id: [r for r in stored if r.data.tags[schema.CONFIRMS] == run_id] for run_id in trials.values()}
    assert [len(runs) for runs in per_trial.values()] == [2, 2, 2]
    seeds = [int(r.data.params["seed"]) for r in stored]
    assert len(set(seeds)) == 6 and 3 not in seeds  # distinct, none the search's seed
    assert seeds == [int(r.data.tags[schema.CONFIRM_SEED]) for r in stored]
    for arm, run_id in trials.items():  # each confirm run trained its trial's configuration
        assert {r.data.params["arm"] for r in per_trial[run_id]} == {arm}


def test_intervals_match_a_recomputation_from_the_stored_runs(armed) -> None:
    parent = armed.result()["parent_run_id"]
    mlflow = client(armed.tracking_uri)
    doc = json.loads(Path(mlflow.download_artifacts(parent, schema.CONFIRM_ARTIFACT)).read_text())
    stored = _confirm_runs(armed.tracking_uri, parent)
    for config in doc["configs"]:
        mine = [r for r in stored if r.data.tags[schema.CONFIRMS] == config["run_id"]]
        values = [r.data.metrics["best_val_accuracy"] for r in mine]
        mean, std = statistics.mean(values), statistics.stdev(values)
        half = stats.t.ppf(0.975, len(values) - 1) * std / math.sqrt(len(values))
        val = config["val"]
        assert (val["n"], val["mean"], val["std"]) == (2, pytest.approx(mean), pytest.approx(std, abs=1e-12))
        assert (val["low"], val["high"]) == (pytest.approx(mean - half), pytest.approx(mean + half))
    noisy = next(c for c in doc["configs"] if c["params"]["arm"] == "c")
    assert noisy["val"]["std"] > 0 and noisy["rank"] == 3


def test_equal_configurations_are_not_distinguishable_and_the_winner_is_best(armed) -> None:
    result = armed.result()
    confirmation = result["confirmation"]
    winner = next(t for t in result["trials"] if t["run_id"] == confirmation["winner"])
    runner_up = next(t for t in result["trials"] if t["run_id"] == confirmation["runner_up"])
    assert {winner["params"]["arm"], runner_up["params"]["arm"]} == {"a", "b"}
    assert confirmation["welch"]["p_value"] == 1.0 and confirmation["welch"]["distinguishable"] is False
    assert re.fullmatch(r"trial \d vs trial \d: not distinguishable at 5% \(Welch's t-test, p = 1\)",
                        confirmation["verdict"])
    assert result["best"]["run_id"] == winner["run_id"] and result["best"]["confirmed"]["val"]["mean"] == 0.9
    tags = client(armed.tracking_uri).get_run(result["parent_run_id"]).data.tags
    assert tags[schema.BEST_RUN_ID] == winner["run_id"] and tags[schema.CONFIRM_VERDICT] == confirmation["verdict"]


def test_hpo_best_shows_the_confirmation(armed, capsys, monkeypatch) -> None:
    monkeypatch.chdir(armed.folder)
    monkeypatch.setenv("HPO_HOME", str(armed.home))
    assert main(["best", "armed", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["best"]["run_id"] == armed.result()["confirmation"]["winner"]
    assert doc["confirmation"]["verdict"] == armed.result()["confirmation"]["verdict"]
    assert main(["best", "armed"]) == 0
    text = capsys.readouterr().out
    assert "confirmation: top 3 configurations x 2 fresh seeds" in text and "not distinguishable at 5%" in text


def test_hpo_confirm_again_keeps_the_finished_confirm_runs(armed, capsys, monkeypatch) -> None:
    monkeypatch.chdir(armed.folder)
    monkeypatch.setenv("HPO_HOME", str(armed.home))
    before = _confirm_runs(armed.tracking_uri, armed.result()["parent_run_id"])
    assert main(["confirm", "armed", "--json"]) == 0  # every run is in the store: no Ray, no new run
    doc = json.loads(capsys.readouterr().out)
    assert sorted(r["run_id"] for r in doc["confirm"]) == sorted(r.info.run_id for r in before)
    assert len(_confirm_runs(armed.tracking_uri, armed.result()["parent_run_id"])) == 6
    assert doc["confirmation"]["winner"] == armed.result()["confirmation"]["winner"]


@pytest.mark.parametrize(("args", "message"), [
    (["confirm", "nowhere"], "hpo confirm: no sweep named or with run id 'nowhere'"),
    (["confirm", "armed", "--top", "0"], "hpo confirm: --top 0: input should be greater than or equal to 2"),
    (["confirm", "armed", "--seeds", "1"], "hpo confirm: --seeds 1: input should be greater than or equal to 2"),
])
def test_hpo_confirm_refuses_unknown_sweeps_and_bad_numbers(armed, capsys, monkeypatch, args, message) -> None:
    monkeypatch.chdir(armed.folder)
    monkeypatch.setenv("HPO_HOME", str(armed.home))
    assert main(args) == 2
    assert message in capsys.readouterr().err


def test_hpo_diagnose_judges_a_confirm_run_as_the_trial_it_is(armed, capsys, monkeypatch) -> None:
    monkeypatch.chdir(armed.folder)
    monkeypatch.setenv("HPO_HOME", str(armed.home))
    run_id = armed.result()["confirm"][0]["run_id"]
    assert main(["diagnose", run_id, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] and doc["run_id"] == run_id


def test_hpo_confirm_refuses_a_sweep_whose_driver_died_mid_search(armed, capsys, monkeypatch) -> None:
    monkeypatch.chdir(armed.folder)
    monkeypatch.setenv("HPO_HOME", str(armed.home))
    parent = armed.result()["parent_run_id"]
    mlflow = client(armed.tracking_uri)
    state = mlflow.get_run(parent).data.tags[schema.SWEEP_STATE]
    mlflow.set_tag(parent, schema.SWEEP_STATE, "running")  # as a killed driver leaves it (no live driver holds it)
    try:
        assert main(["confirm", "armed"]) == 2
        assert "did not finish: its driver died during the search. Resume it first (`hpo resume armed`)" in (
            capsys.readouterr().err)
        assert len(_confirm_runs(armed.tracking_uri, parent)) == 6  # nothing created
    finally:
        mlflow.set_tag(parent, schema.SWEEP_STATE, state)
