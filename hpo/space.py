"""Parameters -> an Optuna define-by-run search space (pure: no Ray, no torch).

Conditional parameters are suggested only when their ``when`` clause holds, so Optuna's TPE with
``group=True`` models each branch of the space separately. A grid is enumerated here, respecting
conditions, and searched through Optuna's ``GridSampler`` over the index of each point, so every
point runs exactly once whatever the concurrency.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, Protocol

from hpo.config import Choice, Fixed, Range, Scalar, SweepConfig
from hpo.trial_keys import GRID_INDEX


class SuggestTrial(Protocol):
    """The part of ``optuna.Trial`` a space function uses."""

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float: ...

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


def ordered(parameters: Mapping[str, Fixed | Choice | Range]) -> list[str]:
    """Parameter names with every parameter after those its ``when`` refers to (declaration order otherwise)."""
    done: list[str] = []
    pending = list(parameters)
    while pending:
        progressed = False
        for name in list(pending):
            if all(dep in done for dep in parameters[name].when):
                done.append(name)
                pending.remove(name)
                progressed = True
        if not progressed:  # a cycle: hpo.rules reports it with the names; here keep going
            done.extend(pending)
            break
    return done


def is_active(param: Fixed | Choice | Range, values: Mapping[str, Any]) -> bool:
    """Whether ``param``'s ``when`` clause holds for the values chosen so far."""
    return all(name in values and contains(allowed, values[name]) for name, allowed in param.condition().items())


def contains(allowed: tuple[Scalar, ...] | list[Any], value: Any) -> bool:
    """``value in allowed``, keeping YAML's true apart from 1."""
    # YAML `true` and 1 compare equal in Python; keep bools and numbers apart.
    return any(type(a) is type(value) and a == value for a in allowed) or (
        not isinstance(value, bool) and any(not isinstance(a, bool) and a == value for a in allowed)
    )


def sample(param: Range | Choice, name: str, trial: SuggestTrial) -> Any:
    """Ask ``trial`` for one value of ``param`` (bounds inclusive)."""
    if isinstance(param, Choice):
        return trial.suggest_categorical(name, param.values)
    if param.is_int:
        return trial.suggest_int(name, int(param.min), int(param.max), step=int(param.step or 1), log=param.is_log)
    return trial.suggest_float(name, param.min, param.max, step=param.step, log=param.is_log)


class DefineByRun:
    """The space function OptunaSearch calls once per trial; returns the fixed values it sets.

    Sampled values are captured by Ray's OptunaSearch; the returned dict adds the fixed ones. A class,
    not a closure, because Ray pickles the searcher into its experiment state.
    """

    def __init__(self, config: SweepConfig) -> None:
        self.params = dict(config.parameters)
        self.order = ordered(self.params)

    def __call__(self, trial: SuggestTrial) -> dict[str, Any]:
        values: dict[str, Any] = {}
        fixed: dict[str, Any] = {}
        for name in self.order:
            param = self.params[name]
            if not is_active(param, values):
                continue
            if isinstance(param, Fixed):
                values[name] = fixed[name] = param.value
            else:
                values[name] = sample(param, name, trial)
        return fixed


def define_by_run(config: SweepConfig) -> Callable[[SuggestTrial], dict[str, Any]]:
    """The define-by-run space of a random or bayes sweep."""
    return DefineByRun(config)


def grid_points(config: SweepConfig) -> list[dict[str, Any]]:
    """Every point of a grid sweep, each a complete trial config; conditional params only where active.

    Raises:
        ValueError: a parameter is continuous (no step); ``hpo.rules`` turns this into a ConfigError first.
    """
    return enumerate_points(config.parameters, _grid_choices)


MAX_DISTINCT_POINTS = 10_000  # as many as a grid may have: past it a space counts as too large to enumerate


def distinct_points(config: SweepConfig, cap: int = MAX_DISTINCT_POINTS) -> int | None:
    """How many distinct configurations the sweep's parameters allow, whatever its method.

    A space is finite when every parameter is a fixed value, a choice, an int range or a range with a
    step; conditional parameters count only where their ``when`` holds (the points of ``grid_points``).

    Returns:
        The number of points, or None when a parameter is continuous or the space has more than ``cap``.
    """
    upper = 1
    for name, param in config.parameters.items():
        if isinstance(param, Range):
            if not param.is_int and param.step is None:
                return None
            # measured before grid_values() lists them: an int range over 0..2**31 is finite but not listable
            if (param.max - param.min) / (param.step or 1) >= cap * 10:
                return None
        upper *= len(_grid_choices(name, param))
        if upper > cap * 10:  # the grid's own bound: conditions rarely prune 10x, and listing more costs seconds
            return None
    count = len(grid_points(config))
    return count if count <= cap else None


def runs_every_point(config: SweepConfig, trials: int) -> bool:
    """Whether the sweep runs each point of its space exactly once (the grid machinery) instead of sampling.

    True for ``method: grid``, and for a random or bayes sweep whose finite space has no more points than
    ``trials``: sampling would only repeat configurations, and the whole space is the best any search finds.
    """
    if config.method == "grid":
        return True
    points = distinct_points(config)
    return points is not None and points <= trials


def corner_points(config: SweepConfig, limit: int = 4096) -> list[dict[str, Any]]:
    """The extremes of the space: each range at its min and max, each choice at every value.

    Rules across fields (warmup shorter than training, ...) are checked on these before a sweep starts.
    Past ``limit`` points the corners are taken two parameters at a time (every pair of parameters at
    every pair of their corners, the rest at their first corner): a rule between two settings is still
    checked at its extremes.
    """
    params = config.parameters
    size = 1
    for name, param in params.items():
        size *= len(_corner_choices(name, param))
    if size <= limit:
        return enumerate_points(params, _corner_choices)
    corners = {name: _corner_choices(name, param) for name, param in params.items()}
    names = list(corners)
    points = enumerate_points(params, _CornersMoved({}))
    for i, a in enumerate(names):
        for va in corners[a]:
            points.extend(enumerate_points(params, _CornersMoved({a: va})))
            for b in names[i + 1:]:
                for vb in corners[b]:
                    points.extend(enumerate_points(params, _CornersMoved({a: va, b: vb})))
    return points


class _CornersMoved:
    """Choices that put the named parameters at the given values and every other one at its first corner."""

    def __init__(self, moved: Mapping[str, Any]) -> None:
        self.moved = dict(moved)

    def __call__(self, name: str, param: Fixed | Choice | Range) -> list[Any]:
        return [self.moved[name]] if name in self.moved else _corner_choices(name, param)[:1]


def enumerate_points(
    params: Mapping[str, Fixed | Choice | Range],
    choices_of: Callable[[str, Fixed | Choice | Range], list[Any]],
) -> list[dict[str, Any]]:
    """The product of ``choices_of`` over the parameters, each conditional one only where active."""
    points: list[dict[str, Any]] = [{}]
    for name in ordered(params):
        param = params[name]
        choices = choices_of(name, param)
        expanded: list[dict[str, Any]] = []
        for point in points:
            if is_active(param, point):
                expanded.extend({**point, name: value} for value in choices)
            else:
                expanded.append(point)
        points = expanded
    return points


def _grid_choices(name: str, param: Fixed | Choice | Range) -> list[Any]:
    if isinstance(param, Fixed):
        return [param.value]
    if isinstance(param, Choice):
        return list(param.values)
    values = param.grid_values()
    if values is None:
        raise ValueError(f"parameter {name} is continuous")
    return values


def _corner_choices(name: str, param: Fixed | Choice | Range) -> list[Any]:
    if isinstance(param, Range):
        low, high = (int(param.min), int(param.max)) if param.is_int else (param.min, param.max)
        return [low] if low == high else [low, high]
    return _grid_choices(name, param)


class GridSpace:
    """Space function for a grid: Optuna picks a point's index, the point's values are returned."""

    def __init__(self, points: list[dict[str, Any]]) -> None:
        self.points = points

    def __call__(self, trial: SuggestTrial) -> dict[str, Any]:
        index = trial.suggest_categorical(GRID_INDEX, list(range(len(self.points))))
        return dict(self.points[index])


def grid_space(points: list[dict[str, Any]]) -> Callable[[SuggestTrial], dict[str, Any]]:
    """The space of a grid sweep over ``points``."""
    return GridSpace(points)


def grid_size(config: SweepConfig) -> int:
    """Number of points in the grid (the cartesian product, pruned by conditions)."""
    return len(grid_points(config))


__all__ = [
    "GRID_INDEX",
    "define_by_run",
    "grid_points",
    "grid_size",
    "grid_space",
    "contains",
    "is_active",
    "ordered",
    "sample",
    "corner_points",
    "enumerate_points",
    "distinct_points",
    "runs_every_point",
]
