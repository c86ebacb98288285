"""Optuna samplers built from a ``hpo.sampler_choice.SamplerChoice``, and the GP-then-X hand-over.

``HandOverSampler`` runs GP until the study holds ``switch_after`` finished trials, then hands over
for good to CMA-ES warm-started from those trials (``gp-cmaes``) or to TPE (``gp-tpe``): GP's cost
per suggestion grows with the cube of the trials, and this keeps long numeric sweeps from slowing to
a crawl. The decision is taken in ``before_trial`` (as in Optuna's AutoSampler), so one trial's
proposal never mixes two samplers; each trial records in its system attributes which one proposed it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.trial import FrozenTrial, TrialState

from hpo.sampler_choice import SamplerChoice

logger = logging.getLogger(__name__)
SAMPLER_ATTR = "hpo:sampler"  # trial system attribute: the sampler that proposed the trial


def build(choice: SamplerChoice, seed: int, trials: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler for ``choice``, seeded with ``seed``, for a sweep of ``trials`` trials."""
    startup = choice.startup_trials
    if choice.name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    if choice.name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup)
    if choice.name == "nsga2":  # multi-objective genetic search; generations of at least 4 so short sweeps evolve
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, trials // 4)))
    if choice.name in ("gp-cmaes", "gp-tpe"):
        return HandOverSampler(choice.name.split("-")[1], int(choice.switch_after or 0), seed, startup)
    return tpe(seed, startup)


def tpe(seed: int, startup: int) -> optuna.samplers.TPESampler:
    """Multivariate TPE, by group (each branch of a conditional space its own model), with constant liar
    (running trials count as bad, so concurrent trials spread out)."""
    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=startup, multivariate=True, group=True, constant_liar=True
    )


class HandOverSampler(optuna.samplers.BaseSampler):
    """GP for the first ``switch_after`` finished trials, then ``then`` (``cmaes`` or ``tpe``) for good.

    Args:
        then: the sampler taking over.
        switch_after: finished (COMPLETE) trials after which it takes over.
        seed: seeds both samplers.
        startup: GP's random start-up trials.
    """

    def __init__(self, then: str, switch_after: int, seed: int, startup: int) -> None:
        self.then, self.switch_after, self.seed = then, switch_after, seed
        self.active: optuna.samplers.BaseSampler = optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
        self.handed_over = False

    def _hand_over(self, finished: Sequence[FrozenTrial]) -> None:
        if self.then == "cmaes":
            # warm start from the trials GP proposed (CMA-ES needs every parameter present in each)
            names = set(finished[0].distributions) if finished else set()
            source = [t for t in finished if set(t.params) == names]
            # cmaes's warm start keeps the best 10% of its sources and needs at least one
            source = source if len(source) >= 10 else None
            self.active = optuna.samplers.CmaEsSampler(seed=self.seed, source_trials=source,
                                                       warn_independent_sampling=False)
        else:
            self.active = tpe(self.seed, 0)
        self.handed_over = True
        logger.info("sampler gp -> %s after %d finished trials (GP's cost per suggestion grows with their cube)",
                    self.then, len(finished))

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if not self.handed_over:
            finished = study._get_trials(deepcopy=False, states=(TrialState.COMPLETE,), use_cache=True)
            if len(finished) >= self.switch_after:
                self._hand_over(sorted(finished, key=lambda t: t.number)[: self.switch_after])
        name = self.then if self.handed_over else "gp"
        study._storage.set_trial_system_attr(trial._trial_id, SAMPLER_ATTR, name)
        self.active.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, BaseDistribution]:
        return self.active.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, BaseDistribution]
    ) -> dict[str, Any]:
        return self.active.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: BaseDistribution
    ) -> Any:
        return self.active.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        self.active.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.active.reseed_rng()
