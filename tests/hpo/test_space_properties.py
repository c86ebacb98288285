"""Property tests of ``hpo.space``: sampled values stay in bounds, conditions hold, grids are exact."""

from __future__ import annotations

import itertools
import math
from typing import Any

import optuna
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpo import space
from hpo.config import Range, SweepConfig

optuna.logging.set_verbosity(optuna.logging.ERROR)
# Optuna narrows a range whose width is not a multiple of step (and says so); bounds still hold.
pytestmark = pytest.mark.filterwarnings("ignore:The distribution is specified by:UserWarning")
FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _config(parameters: dict[str, Any], method: str = "random") -> SweepConfig:
    return SweepConfig.model_validate(
        {"name": "p", "method": method, "trainer": {"function": "pkg.mod:train"}, "parameters": parameters}
    )


def _sample(config: SweepConfig, trials: int, seed: int) -> list[dict[str, Any]]:
    """What a trial sees: sampled values plus the fixed ones the space function returns."""
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=seed))
    run = space.define_by_run(config)
    points = []
    for _ in range(trials):
        trial = study.ask()
        fixed = run(trial)
        points.append({**trial.params, **fixed})
        study.tell(trial, 0.0)
    return points


@st.composite
def ranges(draw: st.DrawFn) -> dict[str, Any]:
    kind = draw(st.sampled_from(["uniform", "log_uniform", "int", "int_log"]))
    if kind in ("int", "int_log"):
        low = draw(st.integers(1 if kind == "int_log" else -50, 50))
        high = draw(st.integers(low, low + 200))
        step = draw(st.one_of(st.none(), st.integers(1, 9))) if kind == "int" else None
        return {"distribution": kind, "min": low, "max": high, **({"step": step} if step else {})}
    if kind == "log_uniform":
        low = draw(st.floats(1e-8, 1e3))
        return {"distribution": kind, "min": low, "max": low * draw(st.floats(1.0, 1e4))}
    low = draw(st.floats(-1e3, 1e3))
    high = low + draw(st.floats(0.0, 1e3))
    step = draw(st.one_of(st.none(), st.floats(1e-3, 50.0)))
    return {"distribution": kind, "min": low, "max": high, **({"step": step} if step else {})}


@FAST
@given(params=st.lists(ranges(), min_size=1, max_size=4), seed=st.integers(0, 2**16))
def test_sampled_values_stay_in_bounds_with_their_type_and_step(params: list[dict[str, Any]], seed: int) -> None:
    config = _config({f"p{i}": p for i, p in enumerate(params)})
    for point in _sample(config, trials=4, seed=seed):
        assert set(point) == set(config.parameters)
        for name, value in point.items():
            param = config.parameters[name]
            assert isinstance(param, Range)
            assert param.min <= value <= param.max, (name, value, param)  # bounds inclusive
            if param.is_int:
                assert type(value) is int
            else:
                assert isinstance(value, float)
            if param.is_log:
                assert value > 0
            if param.step is not None:
                steps = (value - param.min) / param.step
                assert math.isclose(steps, round(steps), abs_tol=1e-6), (value, param)


@st.composite
def conditional_spaces(draw: st.DrawFn) -> tuple[dict[str, Any], list[str], list[str]]:
    """optimizer-like choice ``a``; ``b`` (a choice) only for some values of ``a``; ``c`` (a range) only
    for some values of ``b``."""
    a_values = draw(st.lists(st.sampled_from(["sgd", "adam", "rmsprop", "lamb"]), min_size=1, max_size=4, unique=True))
    a_when = draw(st.lists(st.sampled_from(a_values), min_size=1, unique=True))
    b_values = draw(st.lists(st.integers(0, 9), min_size=1, max_size=4, unique=True))
    b_when = draw(st.lists(st.sampled_from(b_values), min_size=1, unique=True))
    params = {
        "c": {**draw(ranges()), "when": {"b": b_when}},  # declared before its parent: order must not matter
        "a": {"values": a_values},
        "b": {"values": b_values, "when": {"a": a_when}},
        "fixed_for_a": {"value": 1.5, "when": {"a": a_when[0]}},
    }
    return params, a_when, b_when


@FAST
@given(spec=conditional_spaces(), seed=st.integers(0, 2**16))
def test_conditional_params_exist_only_when_their_condition_holds(
    spec: tuple[dict[str, Any], list[str], list[int]], seed: int
) -> None:
    params, a_when, b_when = spec
    config = _config(params)
    for point in _sample(config, trials=6, seed=seed):
        assert point["a"] in params["a"]["values"]
        assert ("b" in point) is (point["a"] in a_when)
        assert ("c" in point) is ("b" in point and point["b"] in b_when)
        assert ("fixed_for_a" in point) is (point["a"] == a_when[0])
        if "fixed_for_a" in point:
            assert point["fixed_for_a"] == 1.5


@st.composite
def grid_spaces(draw: st.DrawFn) -> dict[str, Any]:
    """Up to 4 discrete parameters in declaration order; each may depend on an earlier choice."""
    params: dict[str, Any] = {}
    for i in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["choice", "fixed", "int", "stepped"]))
        if kind == "choice":
            values = draw(st.lists(st.sampled_from("abcde"), min_size=1, max_size=3, unique=True))
            spec: dict[str, Any] = {"values": values}
        elif kind == "fixed":
            spec = {"value": draw(st.integers(0, 3))}
        elif kind == "int":
            low = draw(st.integers(-3, 3))
            spec = {"distribution": "int", "min": low, "max": low + draw(st.integers(0, 4))}
        else:
            spec = {"distribution": "uniform", "min": 0.0, "max": draw(st.sampled_from([0.5, 1.0])), "step": 0.25}
        choices = [n for n, p in params.items() if "values" in p]
        if choices and draw(st.booleans()):
            parent = draw(st.sampled_from(choices))
            spec["when"] = {parent: draw(st.lists(st.sampled_from(params[parent]["values"]), min_size=1, unique=True))}
        params[f"p{i}"] = spec
    return params


def _brute_force_grid(config: SweepConfig) -> set[frozenset[tuple[str, Any]]]:
    """The full product of every parameter's values, each point cut down to its active parameters."""
    names = list(config.parameters)
    values = [space._grid_choices(n, config.parameters[n]) for n in names]
    points = set()
    for combo in itertools.product(*values):
        active: dict[str, Any] = {}
        for name, value in zip(names, combo, strict=True):  # conditions refer to earlier parameters only
            if space.is_active(config.parameters[name], active):
                active[name] = value
        points.add(frozenset(active.items()))
    return points


@FAST
@given(params=grid_spaces())
def test_grid_points_are_the_product_pruned_by_conditions(params: dict[str, Any]) -> None:
    config = _config(params, method="grid")
    points = space.grid_points(config)
    as_sets = [frozenset(p.items()) for p in points]
    assert len(as_sets) == len(set(as_sets))  # each point once
    assert set(as_sets) == _brute_force_grid(config)
    assert space.grid_size(config) == len(points)
    for point in points:
        for name, param in config.parameters.items():
            assert (name in point) is space.is_active(param, point)


def test_grid_example_counts_conditional_branches() -> None:
    config = _config(
        {
            "optimizer": {"values": ["sgd", "adam"]},
            "lr": {"values": [0.1, 0.01, 0.001]},
            "momentum": {"values": [0.0, 0.9], "when": {"optimizer": "sgd"}},
            "nesterov": {"values": [True, False], "when": {"optimizer": "sgd"}},
        },
        method="grid",
    )
    points = space.grid_points(config)
    assert len(points) == 3 * (2 * 2) + 3  # sgd: lr x momentum x nesterov; adam: lr
    assert {"optimizer": "adam", "lr": 0.01} in points
    assert all(("momentum" in p) is (p["optimizer"] == "sgd") for p in points)


def test_int_and_stepped_ranges_enumerate_inclusive_bounds() -> None:
    config = _config(
        {"layers": {"distribution": "int", "min": 1, "max": 7, "step": 3},
         "dropout": {"distribution": "uniform", "min": 0.0, "max": 0.3, "step": 0.1}},
        method="grid",
    )
    assert config.parameters["layers"].grid_values() == [1, 4, 7]  # type: ignore[union-attr]
    assert config.parameters["dropout"].grid_values() == [0.0, 0.1, 0.2, 0.3]  # type: ignore[union-attr]
    assert space.grid_size(config) == 12


def test_yaml_true_is_not_the_number_1() -> None:
    assert space.contains((True,), True)
    assert not space.contains((True,), 1)
    assert not space.contains((1,), True)
    assert space.contains((1,), 1.0)


def test_grid_points_refuse_a_continuous_range() -> None:
    config = _config({"lr": {"distribution": "uniform", "min": 0.0, "max": 1.0}})
    with pytest.raises(ValueError, match="parameter lr is continuous"):
        space.grid_points(config)
