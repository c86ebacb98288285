"""An Optuna sampler wrapper that never proposes a configuration the study has already tried.

Random and Bayesian samplers draw with replacement: over a finite space they propose exact repeats,
each a trial spent learning nothing. ``UnvisitedSampler`` lets the wrapped sampler propose as usual and
steps in only where a proposal leads into a part of the space with nothing left to try: parameter by
parameter, in the order the space suggests them, a value whose every completion is already finished or
running is replaced by the nearest value (numeric) or a seeded random one (categorical) that still
leads to an untried point. Replacing a value, not asking Optuna again, spends no trial number.

A space with no more points than the budget never gets here: it runs as a grid (``space.runs_every_point``).
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution, CategoricalDistribution
from optuna.trial import FrozenTrial, TrialState

from hpo import space
from hpo.config import Fixed, SweepConfig

_TRIED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL, TrialState.RUNNING)


def avoid_repeats(config: SweepConfig, sampler: optuna.samplers.BaseSampler) -> optuna.samplers.BaseSampler:
    """``sampler`` wrapped in ``UnvisitedSampler`` when the sweep's space is finite, else ``sampler`` itself."""
    if space.distinct_points(config) is None:
        return sampler
    sampled = [name for name, param in config.parameters.items() if not isinstance(param, Fixed)]
    points = [{k: v for k, v in point.items() if k in sampled} for point in space.grid_points(config)]
    return UnvisitedSampler(sampler, points, seed=config.seed)


def _key(value: Any) -> tuple[str, Any]:
    """A value as compared between the enumerated points and Optuna's trials.

    Floats to 12 significant digits: a stepped range's grid value and Optuna's may differ in the last bit.
    Typed, so that YAML's true stays apart from 1 and 1 from 1.0.
    """
    if isinstance(value, float):
        return ("float", float(f"{value:.12g}"))
    return (type(value).__name__, value)


class UnvisitedSampler(optuna.samplers.BaseSampler):
    """Wraps ``sampler`` so that no trial repeats a finished or running configuration of ``points``.

    Args:
        sampler: the sweep's own sampler (random, TPE, GP, CMA-ES); it proposes every value first.
        points: every point of the finite space, sampled parameters only (what an Optuna trial holds).
        seed: seeds the choice among categorical replacements.
    """

    def __init__(self, sampler: optuna.samplers.BaseSampler, points: Sequence[Mapping[str, Any]],
                 seed: int | None = None) -> None:
        self.sampler = sampler
        self.points = [dict(point) for point in points]
        self._keys = [{k: _key(v) for k, v in point.items()} for point in self.points]
        self.seed = seed
        # the wrapped sampler's joint (relative) proposal per trial number: handed out one parameter at a
        # time through sample_independent, because Optuna applies relative values without asking the sampler
        self._joint: dict[int, dict[str, Any]] = {}

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.sampler.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        self._joint[trial.number] = self.sampler.sample_relative(study, trial, search_space)
        return {}

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        joint = self._joint.get(trial.number, {})
        # the test Optuna's Trial applies to a relative value before using it (_is_relative_param)
        if param_name in joint and param_distribution._contains(param_distribution.to_internal_repr(joint[param_name])):
            value = joint[param_name]
        else:
            value = self.sampler.sample_independent(study, trial, param_name, param_distribution)
        return self._unvisited(study, trial, param_name, param_distribution, value)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.sampler.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self._joint.pop(trial.number, None)
        self.sampler.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.sampler.reseed_rng()

    def _unvisited(
        self, study: optuna.Study, trial: FrozenTrial, name: str, distribution: BaseDistribution, value: Any
    ) -> Any:
        """``value``, or the replacement for it when every point it leads to has been tried."""
        tried = {
            frozenset((k, _key(v)) for k, v in t.params.items())
            for t in study.get_trials(deepcopy=False, states=_TRIED) if t.number != trial.number
        }
        so_far = {k: _key(v) for k, v in trial.params.items()}
        open_points = [
            (point, keys) for point, keys in zip(self.points, self._keys, strict=True)
            if name in keys and frozenset(keys.items()) not in tried
            and all(keys.get(k) == v for k, v in so_far.items())
        ]
        if not open_points or any(keys[name] == _key(value) for _, keys in open_points):
            return value  # nothing left to try down this branch (cannot happen under budget), or no repeat
        options = list({keys[name]: point[name] for point, keys in open_points}.values())
        if isinstance(distribution, CategoricalDistribution):
            rng = random.Random(f"{self.seed}:{trial.number}:{name}")  # str seeds are stable across runs
            return rng.choice(options)
        log = bool(getattr(distribution, "log", False))

        def distance(option: Any) -> float:
            return abs(math.log(option) - math.log(value)) if log else abs(float(option) - float(value))

        return min(options, key=distance)
