"""Several objectives at once: each trial's objective values, the Pareto front and its hypervolume.

Pure numpy (no Ray, no torch, no MLflow), so the runner, ``hpo best`` and the dashboard compute the
same front from the same numbers: the driver from its trial records, the readers from stored histories.

Which epoch a trial's objectives come from: the best epoch by the *first* objective (the earliest one
on ties). That is the epoch whose weights the trainer checkpoints and whose first-objective value is
the trial's ``best_<metric>``, so every objective of a front member describes one model, the one the
sweep keeps. The last epoch would pair a checkpoint with numbers from a different model. Cost metrics
(``params``, ``size_mb``, ``flops``) do not change between epochs, so for them the choice is moot.

Hypervolume: objectives are turned to "smaller is better" (a maximised value is negated); the
reference point is the worst value observed per objective among the scored trials, pushed out by
``REFERENCE_MARGIN`` of that objective's observed range (1.0 when the range is 0), so a trial that is
worst on one objective still adds volume. The value therefore compares trials of one sweep, not sweeps.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hpo.trial_keys import BEST_KEY

OBJECTIVE_KEY_PREFIX = "hpo_best."  # + name: an objective's value at the first objective's best epoch
REFERENCE_MARGIN = 0.1
# Cost metrics that depend on what else runs on the machine: an objective only with one trial at a time.
MACHINE_DEPENDENT = ("latency_ms",)

Objective = tuple[str, str]  # (metric name, goal: "maximize" | "minimize")


def objective_key(index: int, name: str) -> str:
    """The report key Optuna reads for objective ``index``: the running best for the first, else
    ``hpo_best.<name>`` (that objective's value at the first objective's best epoch)."""
    return BEST_KEY if index == 0 else OBJECTIVE_KEY_PREFIX + name


def best_epoch(values: Sequence[float | None], goal: str) -> int | None:
    """Index of the best finite value (the earliest on ties), or None when there is none."""
    best: int | None = None
    for i, value in enumerate(values):
        if value is None or not math.isfinite(value):
            continue
        if best is None:
            best = i
            continue
        current = values[best]
        assert current is not None
        if (value > current) if goal == "maximize" else (value < current):
            best = i
    return best


def objective_values(
    history: Mapping[str, Sequence[float | None]], objectives: Sequence[Objective]
) -> dict[str, float] | None:
    """Each objective's value at the best epoch by the first objective, or None when any is missing there.

    Args:
        history: per-epoch values by metric name, aligned by epoch.
        objectives: (name, goal) pairs, the first deciding the epoch.
    """
    if not objectives:
        return None
    first, goal = objectives[0]
    index = best_epoch(list(history.get(first, [])), goal)
    if index is None:
        return None
    out: dict[str, float] = {}
    for name, _ in objectives:
        series = history.get(name, [])
        value = series[index] if index < len(series) else None
        if value is None or not math.isfinite(value):
            return None
        out[name] = float(value)
    return out


def _minimised(points: np.ndarray, goals: Sequence[str]) -> np.ndarray:
    signs = np.array([-1.0 if g == "maximize" else 1.0 for g in goals])
    return np.asarray(points, dtype=float) * signs


def pareto_mask(points: Sequence[Sequence[float]] | np.ndarray, goals: Sequence[str]) -> list[bool]:
    """True for each point no other point dominates (at least as good everywhere, better somewhere).

    Equal points do not dominate each other: duplicates are all on the front.
    """
    values = _minimised(np.asarray(points, dtype=float).reshape(len(points), len(goals)), goals)
    mask = []
    for row in values:
        dominated = np.any(np.all(values <= row, axis=1) & np.any(values < row, axis=1))
        mask.append(not bool(dominated))
    return mask


def reference_point(points: Sequence[Sequence[float]], goals: Sequence[str]) -> list[float]:
    """The hypervolume reference in the objectives' own units: worst observed per objective plus a margin."""
    values = _minimised(np.asarray(points, dtype=float).reshape(len(points), len(goals)), goals)
    worst, best = values.max(axis=0), values.min(axis=0)
    span = np.where(worst - best > 0, worst - best, 1.0)
    ref = worst + REFERENCE_MARGIN * span
    return [float(-r if g == "maximize" else r) for r, g in zip(ref, goals, strict=True)]


def hypervolume(
    points: Sequence[Sequence[float]], goals: Sequence[str], reference: Sequence[float] | None = None
) -> float:
    """Volume dominated by ``points`` and bounded by ``reference`` (default :func:`reference_point`).

    Exact: a sweep in 2-D, inclusion-exclusion by slicing (WFG-style recursion) above; fine for the
    tens to hundreds of trials and 2-4 objectives a sweep has.
    """
    if len(points) == 0:
        return 0.0
    ref = reference if reference is not None else reference_point(points, goals)
    values = _minimised(np.asarray(points, dtype=float).reshape(len(points), len(goals)), goals)
    r = _minimised(np.asarray([ref], dtype=float), goals)[0]
    inside = values[np.all(values < r, axis=1)]
    if len(inside) == 0:
        return 0.0
    return float(_volume(inside[pareto_mask(inside, ["minimize"] * len(r))], r))


def _volume(points: np.ndarray, ref: np.ndarray) -> float:
    """Hypervolume of mutually non-dominated minimised ``points`` below ``ref``."""
    if points.shape[1] == 1:
        return float(ref[0] - points[:, 0].min())
    if points.shape[1] == 2:
        ordered = points[np.argsort(points[:, 0])]
        total, ceiling = 0.0, ref[1]
        for x, y in ordered:
            if y < ceiling:
                total += (ref[0] - x) * (ceiling - y)
                ceiling = y
        return total
    # slice along the last objective: between consecutive levels the dominated set is the (d-1)-D
    # volume of the points at or below that level
    ordered = points[np.argsort(points[:, -1])]
    total = 0.0
    for i, level in enumerate(ordered[:, -1]):
        upper = ordered[i + 1, -1] if i + 1 < len(ordered) else ref[-1]
        if upper <= level:
            continue
        below = ordered[: i + 1, :-1]
        below = below[pareto_mask(below, ["minimize"] * below.shape[1])]
        total += _volume(below, ref[:-1]) * (upper - level)
    return total


def hypervolume_curve(points: Sequence[Sequence[float]], goals: Sequence[str]) -> list[float]:
    """Hypervolume of the first 1, 2, ... points, against one reference point (that of all of them)."""
    if len(points) == 0:
        return []
    ref = reference_point(points, goals)
    return [hypervolume(points[: i + 1], goals, ref) for i in range(len(points))]


def front_order(members: Sequence[Mapping[str, float]], objectives: Sequence[Objective]) -> list[int]:
    """Indices of ``members`` best first on the first objective (ties: the next objectives)."""
    def key(i: int) -> tuple[float, ...]:
        return tuple(-members[i][n] if g == "maximize" else members[i][n] for n, g in objectives)

    return sorted(range(len(members)), key=key)


def parse_objectives(text: str | None) -> list[Objective]:
    """The ``hpo.objectives`` tag (JSON ``[{"name": ..., "goal": ...}, ...]``) as pairs; [] when absent."""
    if not text:
        return []
    try:
        raw: Any = json.loads(text)
        return [(str(o["name"]), str(o["goal"])) for o in raw]
    except (ValueError, TypeError, KeyError):
        return []


def objectives_tag(objectives: Sequence[Objective]) -> str:
    """The ``hpo.objectives`` tag value for ``objectives``."""
    return json.dumps([{"name": n, "goal": g} for n, g in objectives])


def front_of(
    histories: Mapping[str, Mapping[str, Sequence[float | None]]], objectives: Sequence[Objective]
) -> tuple[dict[str, dict[str, float]], list[str]]:
    """Objective values and Pareto front of several trials given by their per-epoch histories.

    Args:
        histories: per trial (any key: a run id, a trial id) its ``{metric: [value at epoch 1, 2, ...]}``;
            give only trials that did not fail.
        objectives: (name, goal) pairs.

    Returns:
        The objective values of every trial that has them all, and the keys of the non-dominated ones,
        best first on the first objective.
    """
    scored = {key: v for key, h in histories.items() if (v := objective_values(h, objectives)) is not None}
    if not scored:
        return scored, []
    keys = list(scored)
    names, goals = [n for n, _ in objectives], [g for _, g in objectives]
    mask = pareto_mask([[scored[k][n] for n in names] for k in keys], goals)
    front = [k for k, on in zip(keys, mask, strict=True) if on]
    return scored, [front[i] for i in front_order([scored[k] for k in front], objectives)]
