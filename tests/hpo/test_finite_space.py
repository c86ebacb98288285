"""Finite spaces: counted exactly; no more points than the budget runs each once (with a note first);
a larger finite space is sampled without exact repeats; grids and continuous spaces as before.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import optuna
import pytest
import yaml
from sweep_reads import client

from hpo import rules, space
from hpo.config import SweepConfig
from hpo.loading import validate
from hpo.search import make_sampler, make_searcher
from hpo.trial_book import TrialBook
from hpo.trial_keys import BEST_KEY
from tracker import schema

optuna.logging.set_verbosity(optuna.logging.ERROR)

LR_TWO = {"lr": {"values": [0.01, 0.1]}}
# 2 optimizers x 3 lr, momentum only with sgd (x2), 2 layers, dropout 0, 0.1, 0.2, 0.3, a fixed width:
# (2 x 3 + 3) x 2 x 4 = 72 points
CONDITIONAL_72 = {
    "optimizer": {"values": ["sgd", "adam"]},
    "lr": {"values": [0.1, 0.01, 0.001]},
    "momentum": {"values": [0.5, 0.9], "when": {"optimizer": "sgd"}},
    "layers": {"distribution": "int", "min": 1, "max": 2},
    "dropout": {"distribution": "uniform", "min": 0.0, "max": 0.3, "step": 0.1},
    "hidden": 16,
}


def _config(parameters: dict[str, Any], method: str = "bayes", trials: int | None = 10, **extra: Any) -> SweepConfig:
    budget = {"trials": trials} if trials is not None else {}
    return validate({"name": "f", "method": method, "seed": 0, "budget": budget,
                     "trainer": {"task": "digits", "epochs": 1}, "parameters": parameters, **extra})


# -- counting ----------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("parameters", "points"),
    [
        (LR_TWO, 2),
        ({"lr": {"values": [0.01, 0.1]}, "hidden": 16}, 2),  # a fixed value adds no point
        ({"layers": {"distribution": "int", "min": 1, "max": 3}}, 3),
        ({"layers": {"distribution": "int", "min": 1, "max": 9, "step": 4}}, 3),  # 1, 5, 9
        ({"hidden": {"distribution": "int_log", "min": 8, "max": 64}, "lr": {"values": [0.1, 0.2]}}, 114),
        ({"dropout": {"distribution": "uniform", "min": 0.0, "max": 0.5, "step": 0.1}}, 6),
        (CONDITIONAL_72, 72),
    ],
)
def test_distinct_points_counts_finite_spaces(parameters: dict[str, Any], points: int) -> None:
    assert space.distinct_points(_config(parameters)) == points


@pytest.mark.parametrize(
    "parameters",
    [
        {"lr": {"distribution": "log_uniform", "min": 1e-4, "max": 0.1}},
        {"lr": {"values": [0.01, 0.1]}, "dropout": {"distribution": "uniform", "min": 0.0, "max": 0.5}},
        {"seed_like": {"distribution": "int", "min": 0, "max": 2**31}},  # finite, but not listable: no hang
        {f"p{i}": {"values": [1, 2, 3, 4]} for i in range(9)},  # 4**9 = 262,144 points
    ],
    ids=["continuous", "one continuous", "huge int range", "over the cap"],
)
def test_distinct_points_is_none_for_infinite_or_huge_spaces(parameters: dict[str, Any]) -> None:
    # the shape only: these names are not the built-in trainer's settings
    config = SweepConfig.model_validate({"name": "f", "method": "random", "trainer": {"task": "digits"},
                                         "parameters": parameters})
    assert space.distinct_points(config) is None


def test_trials_planned_is_what_will_run() -> None:
    assert rules.trials_planned(_config(LR_TWO, trials=10)) == 2
    assert rules.trials_planned(_config(LR_TWO, trials=None)) == 2  # the default 10, cut to the space
    assert rules.trials_planned(_config(LR_TWO, trials=1)) == 1
    assert rules.trials_planned(_config(CONDITIONAL_72, method="random", trials=40)) == 40
    continuous = {"lr": {"distribution": "log_uniform", "min": 1e-4, "max": 0.1}}
    assert rules.trials_planned(_config(continuous, trials=7)) == 7  # as before
    assert rules.trials_planned(_config(CONDITIONAL_72, method="grid", trials=None)) == 72  # as before


# -- the note, through the console script --------------------------------------------------------------
def _validate(run_hpo: Any, folder: Path, parameters: dict[str, Any], method: str = "bayes",
              trials: int | None = 10) -> Any:
    raw = {"name": "f", "method": method, "trainer": {"task": "digits", "epochs": 1}, "parameters": parameters}
    if trials is not None:
        raw["budget"] = {"trials": trials}
    sweep = folder / "sweep.yaml"
    sweep.write_text(yaml.safe_dump(raw), encoding="utf-8")
    return run_hpo(["validate", str(sweep)], cwd=folder)


@pytest.mark.parametrize("method", ["random", "bayes"])
def test_validate_notes_a_space_smaller_than_the_budget(run_hpo: Any, tmp_path: Path, method: str) -> None:
    done = _validate(run_hpo, tmp_path, LR_TWO, method=method, trials=10)
    assert done.returncode == 0, done.stderr
    assert done.stderr.strip() == (
        "note: parameters have only 2 distinct configurations but budget.trials is 10; method: grid runs each "
        f"exactly once, and so will this {method} sweep: 2 trials, no repeats"
    )
    assert ", 2 trials of up to 1 epochs" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["sweep.yaml"]  # nothing created


def test_validate_notes_the_default_budget_and_an_equal_one(run_hpo: Any, tmp_path: Path) -> None:
    done = _validate(run_hpo, tmp_path, LR_TWO, trials=None)
    assert done.returncode == 0, done.stderr
    assert "only 2 distinct configurations but budget.trials defaults to 10;" in done.stderr
    done = _validate(run_hpo, tmp_path, {"layers": {"distribution": "int", "min": 1, "max": 3}}, trials=3)
    assert done.returncode == 0, done.stderr
    assert "exactly 3 distinct configurations and budget.trials is 3;" in done.stderr
    assert "3 trials, no repeats" in done.stderr


def test_validate_says_nothing_for_a_larger_or_continuous_space_or_a_grid(run_hpo: Any, tmp_path: Path) -> None:
    cases = [
        (LR_TWO, "bayes", 1),  # 2 points, 1 trial: sampled, no note
        ({"lr": {"distribution": "log_uniform", "min": 1e-4, "max": 0.1}}, "random", 10),
        (LR_TWO, "grid", None),
    ]
    for parameters, method, trials in cases:
        done = _validate(run_hpo, tmp_path, parameters, method=method, trials=trials)
        assert done.returncode == 0, done.stderr
        assert done.stderr == "", (method, done.stderr)


# -- samplers ----------------------------------------------------------------------------------------------
def _sequence(config: SweepConfig, trials: int) -> tuple[list[dict[str, Any]], list[int]]:
    """The configurations the sweep's sampler proposes in-process (a made-up score told each time)."""
    study = optuna.create_study(direction="maximize", sampler=make_sampler(config, trials))
    run = space.define_by_run(config)
    proposed = []
    for _ in range(trials):
        trial = study.ask()
        fixed = run(trial)
        proposed.append({**trial.params, **fixed})
        study.tell(trial, -abs(trial.params["lr"] - 0.01) + trial.params["dropout"])
    return proposed, [t.number for t in study.trials]


@pytest.mark.parametrize("method", ["random", "bayes"])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_larger_finite_space_is_sampled_without_repeats(method: str, seed: int) -> None:
    """40 of 72 points: plain random and TPE repeat 9-13 of them at these seeds; none here, and no trial
    number is spent on a refused proposal."""
    config = _config(CONDITIONAL_72, method=method, trials=40).model_copy(update={"seed": seed})
    proposed, numbers = _sequence(config, 40)
    assert numbers == list(range(40))
    assert len({repr(sorted(p.items())) for p in proposed}) == 40
    for point in proposed:  # every proposal is a point of the space, conditions respected
        assert ("momentum" in point) is (point["optimizer"] == "sgd")
        assert any(math.isclose(point["dropout"], d, abs_tol=1e-12) for d in (0.0, 0.1, 0.2, 0.3))
        assert point["hidden"] == 16
    assert _sequence(config, 40)[0] == proposed  # still seeded


def test_the_last_free_points_are_found() -> None:
    """71 trials over 72 points: every one distinct, though the sampler keeps proposing tried ones."""
    proposed, numbers = _sequence(_config(CONDITIONAL_72, trials=71), 71)
    assert numbers == list(range(71))
    assert len({repr(sorted(p.items())) for p in proposed}) == 71


def test_searcher_runs_a_small_finite_space_as_its_grid() -> None:
    """Through Ray's OptunaSearch (as ``hpo run`` wires it): 2 points, budget 5 -> each point once."""
    config = _config(LR_TWO, trials=5)
    trials = rules.trials_planned(config)
    assert trials == 2
    searcher = make_searcher(config, trials, TrialBook())
    chosen = []
    for i in range(trials):
        suggested = searcher.suggest(f"t{i}")
        assert set(suggested) == {space.GRID_INDEX, "lr"}
        chosen.append(suggested["lr"])
        searcher.on_trial_complete(f"t{i}", {BEST_KEY: 0.5, "training_iteration": 1})
    assert sorted(chosen) == [0.01, 0.1]


# -- a real sweep ------------------------------------------------------------------------------------------
TWO_POINT_BAYES = """\
name: two_points
method: bayes
metric: {name: val_accuracy, goal: maximize}
budget: {trials: 5, max_concurrent: 1}
seed: 0
trainer: {task: digits, epochs: 1, options: {hidden: 16, train_fraction: 0.3}}
parameters:
  lr: {values: [0.01, 0.1]}
"""


@pytest.mark.slow
def test_bayes_sweep_over_two_points_runs_two_trials(sweep_runner: Any, tmp_path: Path) -> None:
    done = sweep_runner(tmp_path / "sweep", TWO_POINT_BAYES)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "note: parameters have only 2 distinct configurations but budget.trials is 5;" in done.stderr
    assert "over 1 parameters, 2 trials" in done.stderr
    assert "trials 2/2 done" in done.stderr
    doc = done.result()
    assert sorted(t["params"]["lr"] for t in doc["trials"]) == [0.01, 0.1]
    assert {t["status"] for t in doc["trials"]} == {"FINISHED"}
    assert all(space.GRID_INDEX not in t["params"] for t in doc["trials"])
    parent = client(done.tracking_uri).get_run(doc["parent_run_id"])
    assert parent.data.tags[schema.TRIALS_TOTAL] == "2"
    # sampler: auto says so, on stderr and on the sweep run
    assert "sampler auto -> grid: the space has 2 distinct configurations, no more than the budget" in done.stderr
    assert parent.data.tags[schema.SAMPLER] == "grid"
    assert parent.data.tags[schema.SAMPLER_REQUESTED] == "auto"
    assert parent.data.tags[schema.SAMPLER_REASON].startswith("the space has 2 distinct configurations")


def test_searcher_samples_a_larger_finite_space_without_repeats() -> None:
    """Through Ray's OptunaSearch (as ``hpo run`` wires it): 30 of 72 points, each trial a new one, and the
    Optuna trial numbers run 0..29 with none skipped."""
    config = _config(CONDITIONAL_72, trials=30)
    book = TrialBook()
    searcher = make_searcher(config, rules.trials_planned(config), book)
    proposed = []
    for i in range(30):
        suggested = searcher.suggest(f"t{i}")
        proposed.append(repr(sorted(suggested.items())))
        searcher.on_trial_complete(f"t{i}", {BEST_KEY: -abs(suggested["lr"] - 0.01), "training_iteration": 1})
    assert len(set(proposed)) == 30
    assert sorted(book.numbers.values()) == list(range(30))
