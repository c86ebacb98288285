"""Same seed, same configurations: the samplers of ``hpo.search`` over the space of ``hpo.space``, in-process."""

from __future__ import annotations

from typing import Any

import optuna
import pytest

from hpo import space
from hpo.config import SweepConfig
from hpo.loading import validate
from hpo.search import make_sampler

optuna.logging.set_verbosity(optuna.logging.ERROR)

PARAMETERS = {
    "optimizer": {"values": ["sgd", "adam"]},
    "lr": {"distribution": "log_uniform", "min": 1e-4, "max": 0.3},
    "momentum": {"distribution": "uniform", "min": 0.5, "max": 0.95, "when": {"optimizer": "sgd"}},
    "batch_size": {"values": [32, 64, 128]},
    "layers": {"distribution": "int", "min": 1, "max": 3},
}


def _config(method: str, seed: int, **extra: Any) -> SweepConfig:
    return validate({
        "name": "s", "method": method, "seed": seed, "budget": {"trials": 12},
        "trainer": {"task": "digits", "epochs": 2}, "parameters": PARAMETERS, **extra,
    })


def sequence(config: SweepConfig, trials: int = 12) -> list[dict[str, Any]]:
    """The configurations the sweep's sampler proposes, in order, told a made-up score each time."""
    study = optuna.create_study(direction="maximize", sampler=make_sampler(config, trials))
    run = space.define_by_run(config)
    proposed = []
    for _ in range(trials):
        trial = study.ask()
        fixed = run(trial)  # suggests first: trial.params is filled by the call
        params = {**trial.params, **fixed}
        proposed.append(params)
        study.tell(trial, -abs(params["lr"] - 0.01))  # deterministic, so TPE's model is too
    return proposed


@pytest.mark.parametrize("method", ["random", "bayes"])
def test_same_seed_same_sequence(method: str) -> None:
    first = sequence(_config(method, seed=3))
    assert sequence(_config(method, seed=3)) == first
    assert len({repr(sorted(p.items())) for p in first}) == len(first)  # and they are not all the same


@pytest.mark.parametrize("method", ["random", "bayes"])
def test_other_seed_other_sequence(method: str) -> None:
    assert sequence(_config(method, seed=3)) != sequence(_config(method, seed=4))


def test_seed_fixes_each_bayes_sampler() -> None:
    for sampler in ("cmaes",):  # needs >= 2 ranges and no conditions; tpe is covered above, gp loads torch
        config = _config("bayes", seed=1, sampler=sampler, parameters={
            "lr": {"distribution": "log_uniform", "min": 1e-4, "max": 0.3},
            "dropout": {"distribution": "uniform", "min": 0.0, "max": 0.5},
        })
        assert sequence(config, trials=5) == sequence(config, trials=5)


def test_grid_sampler_visits_each_point_once_in_a_seeded_order() -> None:
    config = validate({
        "name": "g", "method": "grid", "seed": 5, "trainer": {"task": "digits", "epochs": 2},
        "parameters": {"optimizer": {"values": ["sgd", "adam"]}, "lr": {"values": [0.1, 0.01, 0.001]},
                       "momentum": {"values": [0.5, 0.9], "when": {"optimizer": "sgd"}}},
    })
    points = space.grid_points(config)
    assert len(points) == 9

    def order(seed_config: SweepConfig) -> list[int]:
        study = optuna.create_study(sampler=make_sampler(seed_config, len(points)))
        grid = space.grid_space(points)
        chosen = []
        for _ in range(len(points)):
            trial = study.ask()
            grid(trial)
            chosen.append(trial.params[space.GRID_INDEX])
            study.tell(trial, 0.0)  # the last tell must not raise (Study.stop outside optimize)
        return chosen

    first = order(config)
    assert sorted(first) == list(range(9))
    assert order(config) == first
    assert order(config.model_copy(update={"seed": 6})) != first
