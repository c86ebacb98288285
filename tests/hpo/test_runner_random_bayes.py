"""End to end: random and bayes sweeps run ``budget.trials``; concurrent trials lose no metric point;
the random sweep proposes exactly what its seeded sampler proposes in-process.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import optuna
import pytest
from sweep_reads import StoredTrial, all_runs, stored_trials

from hpo import space
from hpo.loading import load_sweep
from hpo.search import make_sampler
from tracker import schema
from trainers.tasks import TASKS

pytestmark = pytest.mark.slow
SweepRun = Any  # tests/conftest.py's SweepRun, reached through fixtures

RANDOM_YAML = """\
name: concurrent
method: random
metric: {name: val_loss, goal: minimize}
budget: {trials: 8, max_concurrent: 4}
resources: {cpu: 0.5}           # 4 trials side by side on 2 cores
seed: 11
trainer: {task: digits, epochs: 4, options: {hidden: 16, train_fraction: 0.3}}
parameters:
  optimizer: {values: [sgd, adam]}
  lr: {distribution: log_uniform, min: 1e-3, max: 0.1}
  momentum: {distribution: uniform, min: 0.5, max: 0.95, when: {optimizer: sgd}}
  layers: {distribution: int, min: 1, max: 2}
"""

BAYES_YAML = """\
name: bayesian
method: bayes
metric: {name: val_accuracy, goal: maximize}
budget: {trials: 20, max_concurrent: 1}
seed: 0
trainer: {task: digits, epochs: 2, options: {hidden: 16, train_fraction: 0.3}}
parameters:
  lr: {distribution: log_uniform, min: 1e-3, max: 0.1}
  batch_size: {values: [32, 64]}
"""
TUNED = ("optimizer", "lr", "momentum", "layers")


@pytest.fixture(scope="module")
def random_run(sweep_runner, tmp_path_factory: pytest.TempPathFactory) -> SweepRun:
    return sweep_runner(tmp_path_factory.mktemp("random_sweep"), RANDOM_YAML)


@pytest.fixture(scope="module")
def random_trials(random_run: SweepRun) -> list[StoredTrial]:
    assert random_run.returncode == 0, random_run.stderr[-3000:]
    return stored_trials(random_run.tracking_uri, random_run.result()["parent_run_id"])


def test_random_runs_budget_trials_all_finished(random_run: SweepRun, random_trials: list[StoredTrial]) -> None:
    doc = random_run.result()
    assert len(doc["trials"]) == len(random_trials) == 8
    assert [t.status for t in random_trials] == ["FINISHED"] * 8
    assert {t.tags[schema.PARENT_RUN_ID] for t in random_trials} == {doc["parent_run_id"]}
    assert len(all_runs(random_run.tracking_uri)) == 9  # + the parent
    for trial in doc["trials"]:
        assert type(trial["params"]["layers"]) is int
        assert 1e-3 <= trial["params"]["lr"] <= 0.1
        assert ("momentum" in trial["params"]) is (trial["params"]["optimizer"] == "sgd")


def _max_overlap(trials: list[StoredTrial], uri: str) -> int:
    """Most trial runs open at the same moment (created at trial start, closed at its end)."""
    ends = {r.info.run_id: r.info.end_time for r in all_runs(uri)}
    events = sorted([(t.start_time_ms, 1) for t in trials] + [(ends[t.run_id], -1) for t in trials])
    open_now = peak = 0
    for _, change in events:
        open_now += change
        peak = max(peak, open_now)
    return peak


def test_concurrent_trials_lose_no_metric_point(random_run: SweepRun, random_trials: list[StoredTrial]) -> None:
    # how many overlap at the peak depends on timing: never more than max_concurrent (4); with 4 slots
    # for 8 trials of 4 epochs, more than one
    assert 1 < _max_overlap(random_trials, random_run.tracking_uri) <= 4
    reported = set(TASKS["digits"].metrics)
    for trial in random_trials:
        assert int(trial.metrics[schema.EPOCHS_RUN]) == 4
        assert reported <= set(trial.points)
        for key in reported:
            assert [step for step, _ in trial.points[key]] == [1, 2, 3, 4], (trial.run_id, key)
    doc = {t["run_id"]: t for t in random_run.result()["trials"]}
    for trial in random_trials:  # the store holds what the driver saw
        assert trial.metrics["best_val_loss"] == pytest.approx(doc[trial.run_id]["metric"])


def _in_process_sequence(sweep_file: Path, trials: int) -> list[dict[str, Any]]:
    config, _ = load_sweep(sweep_file)
    study = optuna.create_study(sampler=make_sampler(config, trials))
    run = space.define_by_run(config)
    proposed = []
    for _ in range(trials):
        trial = study.ask()
        fixed = run(trial)
        proposed.append({**trial.params, **fixed})
    return proposed


def test_random_sweep_proposes_its_seeded_sequence(random_run: SweepRun) -> None:
    """The same seed gives the same configurations through Ray as straight from the sampler."""
    in_order = sorted(random_run.result()["trials"], key=lambda t: t["trial_number"])
    ran = [{k: v for k, v in t["params"].items() if k in TUNED} for t in in_order]
    assert ran == _in_process_sequence(random_run.sweep_file, 8)
    other = random_run.sweep_file.with_name("other_seed.yaml")
    other.write_text(RANDOM_YAML.replace("seed: 11", "seed: 12"), encoding="utf-8")
    assert _in_process_sequence(other, 8) != ran


def test_bayes_runs_trials_set_on_the_command_line(sweep_runner, tmp_path: Path) -> None:
    done = sweep_runner(tmp_path / "bayes", BAYES_YAML, "--set", "budget.trials=3")
    assert done.returncode == 0, done.stderr[-3000:]
    doc = done.result()
    assert len(doc["trials"]) == 3
    trials = stored_trials(done.tracking_uri, doc["parent_run_id"])
    assert [t.status for t in trials] == ["FINISHED"] * 3
    assert {t.tags[schema.METHOD] for t in trials} == {"bayes"}
    assert {t.tags[schema.SAMPLER] for t in trials} == {"tpe"}  # sampler: auto, categorical batch_size
    assert {t.tags[schema.SAMPLER_REQUESTED] for t in trials} == {"auto"}
    assert "sampler auto -> tpe (3 random start-up trials): categorical parameters (batch_size)" in done.stderr
    for trial in trials:
        assert [step for step, _ in trial.points["val_accuracy"]] == [1, 2]
    best = max(t.metrics["best_val_accuracy"] for t in trials)
    assert doc["best"]["metric"] == pytest.approx(best)
    (parent,) = [r for r in all_runs(done.tracking_uri) if r.info.run_id == doc["parent_run_id"]]
    assert parent.data.tags[schema.TRIALS_TOTAL] == "3"
    assert parent.data.params["budget.trials"] == "3"  # the resolved config, override applied
