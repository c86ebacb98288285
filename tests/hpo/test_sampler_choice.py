"""``sampler: auto``: the rules pick the documented sampler for the space, the budget and early stopping;
the samplers ``hpo run`` builds from them; GP hands over to CMA-ES after its trials."""

from __future__ import annotations

from typing import Any

import optuna
import pytest

from hpo import sampler_choice
from hpo.config import SweepConfig
from hpo.loading import validate
from hpo.sampler_choice import GP_MAX_TRIALS, choose, startup_trials
from hpo.samplers import SAMPLER_ATTR, HandOverSampler
from hpo.search import make_sampler

optuna.logging.set_verbosity(optuna.logging.ERROR)

NUMERIC = {"lr": {"distribution": "log_uniform", "min": 1e-4, "max": 0.1},
           "dropout": {"distribution": "uniform", "min": 0.0, "max": 0.5}}
CATEGORICAL = {**NUMERIC, "batch_size": {"values": [32, 64]}}
CONDITIONAL = {"optimizer": {"values": ["sgd", "adam"]},
               "momentum": {"distribution": "uniform", "min": 0.0, "max": 0.99, "when": {"optimizer": "sgd"}},
               "lr": {"distribution": "log_uniform", "min": 1e-4, "max": 0.1}}


def _config(parameters: dict[str, Any], trials: int = 40, **extra: Any) -> SweepConfig:
    return validate({"name": "auto", "method": "bayes", "seed": 0, "budget": {"trials": trials},
                     "trainer": {"task": "digits", "epochs": 3}, "parameters": parameters, **extra})


@pytest.mark.parametrize(
    ("parameters", "trials", "extra", "name", "why"),
    [
        (NUMERIC, 40, {}, "gp", "numeric space (lr, dropout) and 40 trials <= 250"),
        (NUMERIC, 1000, {}, "gp-cmaes", "GP for the first 250 finished trials, then CMA-ES"),
        ({"lr": NUMERIC["lr"]}, 1000, {}, "gp-tpe", "then TPE"),
        (CATEGORICAL, 40, {}, "tpe", "categorical parameters (batch_size)"),
        (CONDITIONAL, 40, {}, "tpe", "conditional parameters (momentum)"),
        (NUMERIC, 40, {"early_stop": {"type": "asha"}}, "tpe", "early stopping (asha): TPE learns from the stopped"),
        (NUMERIC, 40, {"early_stop": {"type": "hyperband"}}, "tpe", "early stopping (hyperband)"),
        (NUMERIC, 40, {"sampler": "cmaes"}, "cmaes", "sampler: cmaes in the sweep file"),
        (NUMERIC, 40, {"metric": [{"name": "val_accuracy", "goal": "maximize"},
                                  {"name": "params", "goal": "minimize"}]}, "gp", "2 objectives over a numeric"),
        (NUMERIC, 400, {"metric": [{"name": "val_accuracy", "goal": "maximize"},
                                   {"name": "params", "goal": "minimize"}]}, "nsga2", "NSGA-II"),
        (CATEGORICAL, 400, {"metric": [{"name": "val_accuracy", "goal": "maximize"},
                                       {"name": "params", "goal": "minimize"}]}, "tpe", "multi-objective TPE"),
        ({"lr": {"values": [0.01, 0.1]}, "layers": {"distribution": "int", "min": 1, "max": 2}}, 10, {},
         "grid", "4 distinct configurations, no more than the budget"),
        ({"lr": {"values": [0.01, 0.1, 1.0]}, "layers": {"distribution": "int", "min": 1, "max": 3}}, 5, {},
         "tpe", "finite space of 9 configurations: no exact repeats"),
    ],
)
def test_auto_picks_the_documented_sampler(parameters: dict[str, Any], trials: int, extra: dict[str, Any],
                                            name: str, why: str) -> None:
    choice = choose(_config(parameters, trials, **extra))
    assert choice.name == name
    assert why in choice.reason
    assert choice.describe().startswith(f"sampler {choice.requested}")


def test_auto_is_the_default_and_a_named_sampler_is_kept() -> None:
    assert _config(NUMERIC).sampler_name == "auto"
    assert choose(_config(NUMERIC)).requested == "auto"
    named = choose(_config(CATEGORICAL, sampler="gp"))
    assert (named.name, named.requested) == ("gp", "gp")
    assert named.describe().startswith("sampler gp (10 random start-up trials): sampler: gp in the sweep file")


@pytest.mark.parametrize(("trials", "startup"), [(8, 3), (12, 3), (20, 5), (40, 10), (1000, 10)])
def test_startup_trials_are_a_quarter_of_the_budget_from_3_to_10(trials: int, startup: int) -> None:
    assert startup_trials(trials) == startup


def test_the_built_samplers_match_the_choice() -> None:
    gp = make_sampler(_config(NUMERIC, 40), 40)
    assert isinstance(gp, optuna.samplers.GPSampler) and gp._n_startup_trials == 10
    tpe = make_sampler(_config(CONDITIONAL, 100), 100)
    assert isinstance(tpe, optuna.samplers.TPESampler)
    assert (tpe._multivariate, tpe._group, tpe._constant_liar, tpe._n_startup_trials) == (True, True, True, 10)
    long = make_sampler(_config(NUMERIC, 1000), 1000)
    assert isinstance(long, HandOverSampler) and (long.then, long.switch_after) == ("cmaes", GP_MAX_TRIALS)


def test_gp_hands_over_to_cmaes_warm_started_from_its_trials() -> None:
    # GP's trials here are its random start-up ones (a fitted GP costs seconds; the hand-over is the point)
    sampler = HandOverSampler("cmaes", switch_after=10, seed=0, startup=10)
    study = optuna.create_study(sampler=sampler)
    study.optimize(lambda t: (t.suggest_float("x", -2, 2) - 0.5) ** 2 + t.suggest_float("y", -2, 2) ** 2, n_trials=13)
    used = [t.system_attrs[SAMPLER_ATTR] for t in study.trials]
    assert used == ["gp"] * 10 + ["cmaes"] * 3
    assert isinstance(sampler.active, optuna.samplers.CmaEsSampler) and sampler.handed_over
    assert [t.number for t in sampler.active._source_trials] == list(range(10))
    for trial in study.trials:
        assert -2 <= trial.params["x"] <= 2 and -2 <= trial.params["y"] <= 2


def test_the_reason_names_no_optuna_import() -> None:
    """``hpo validate`` prints the choice: the rules are pure."""
    assert "optuna" not in sampler_choice.__dict__


def test_a_sweep_stored_before_auto_keeps_its_sampler_or_is_refused_by_name() -> None:
    old = {"hpo.sampler": "tpe"}  # a parent run from before `sampler: auto`: no hpo.sampler_requested
    refused = sampler_choice.unrecorded_sampler_change(old, _config(NUMERIC))  # auto would pick gp now
    assert refused is not None and "ran with tpe" in refused and "--set sampler=tpe" in refused
    assert sampler_choice.unrecorded_sampler_change(old, _config(NUMERIC, sampler="tpe")) is None
    assert sampler_choice.unrecorded_sampler_change(old, _config(CATEGORICAL)) is None  # auto picks tpe too
    recorded = {"hpo.sampler": "gp", "hpo.sampler_requested": "auto"}  # since: auto is asked again
    assert sampler_choice.unrecorded_sampler_change(recorded, _config(NUMERIC)) is None
