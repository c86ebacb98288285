"""Which Optuna sampler a bayes sweep runs on, and why: the rules of ``sampler: auto`` (the default).

Written from the rules of Optuna's own AutoSampler (an OptunaHub package, ``samplers/auto_sampler``:
TPE when the space has categorical or conditional parameters, GP for numeric spaces until 250 finished
trials, then CMA-ES warm-started from them; for several objectives GP or TPE, then NSGA-II), decided
once from the sweep file instead of trial by trial, plus one rule of ours: with early stopping, TPE,
because Optuna's TPE ranks the trials a scheduler stopped by their last reported value, while its GP
and CMA-ES learn from finished trials only, so they would ignore most of an ASHA sweep.

Pure: no Optuna import, so ``hpo validate`` can say what a sweep will run on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Literal

from hpo import rules, space
from hpo.config import Choice, Range, SweepConfig
from tracker import schema

Resolved = Literal["grid", "tpe", "gp", "cmaes", "gp-cmaes", "gp-tpe", "nsga2"]

# GP's cost per suggestion grows ~cubically with the finished trials (bench/sampler_cost.py measured it:
# see the README, "Search efficiency"); past this many, ``auto`` hands over to CMA-ES (or TPE / NSGA-II).
GP_MAX_TRIALS = 250
MANY_OBJECTIVES = 4  # from 4 objectives on, Optuna's developers prefer TPE to GP


@dataclass(frozen=True)
class SamplerChoice:
    """The sampler a sweep runs on.

    Attributes:
        name: the sampler (``gp-cmaes``: GP for the first ``switch_after`` finished trials, then CMA-ES
            warm-started from them; ``gp-tpe`` likewise with TPE, for one numeric parameter).
        reason: one sentence for the log and the sweep run's tag.
        startup_trials: random trials before the model-based proposals start.
        switch_after: finished trials after which ``gp-*`` hands over; None for a single sampler.
        requested: what the sweep file asked for (``auto`` or a sampler name).
    """

    name: Resolved
    reason: str
    startup_trials: int
    switch_after: int | None = None
    requested: str = "auto"

    def describe(self) -> str:
        """``sampler auto -> tpe: <reason>``: the line printed when a sweep starts."""
        head = f"sampler {self.requested}" + (f" -> {self.name}" if self.requested != self.name else "")
        startup = f" ({self.startup_trials} random start-up trials)" if self.name != "grid" else ""
        return f"{head}{startup}: {self.reason}"


def startup_trials(trials: int) -> int:
    """Random trials before a model-based sampler proposes: a quarter of the budget, 3 to 10.

    Optuna's default 10 would leave a 12-trial sweep with 2 model-based proposals; fewer than 3 give a
    model nothing to fit.
    """
    return min(10, max(3, trials // 4))


def choose(config: SweepConfig, trials: int | None = None) -> SamplerChoice:
    """The sampler of a bayes sweep of ``trials`` trials (default: the trials it plans).

    Args:
        config: a validated bayes sweep; ``config.sampler`` None or ``auto`` applies the rules below,
            a named sampler is taken as given.
        trials: the sweep's trials; ``rules.trials_planned(config)`` when None.

    Returns:
        The choice and its reason.
    """
    trials = rules.trials_planned(config) if trials is None else trials
    startup = startup_trials(trials)
    requested = config.sampler or "auto"
    points = space.distinct_points(config)
    if points is not None and space.runs_every_point(config, trials):
        return SamplerChoice("grid", f"the space has {points} distinct configurations, no more than the budget: "
                             "each runs once, no repeats", 0, requested=requested)
    choice = _by_rules(config, trials, startup, requested)
    if points is not None:  # hpo.unvisited steps in when a proposal would repeat a tried configuration
        return replace(choice, reason=f"{choice.reason}; finite space of {points} configurations: no exact repeats")
    return choice


def _by_rules(config: SweepConfig, trials: int, startup: int, requested: str) -> SamplerChoice:
    if requested != "auto":
        return SamplerChoice(requested, f"sampler: {requested} in the sweep file",  # type: ignore[arg-type]
                             startup, requested=requested)
    if config.multi_objective:
        return _multi_objective(config, trials, startup)
    if config.early_stop.type != "none":
        return SamplerChoice(
            "tpe", f"early stopping ({config.early_stop.type}): TPE learns from the stopped trials' last values, "
            "GP and CMA-ES only from finished trials", startup)
    if reason := _not_numeric(config):
        return SamplerChoice("tpe", f"{reason}: TPE (multivariate, by group) models them", startup)
    numeric = _numeric(config)
    if trials <= GP_MAX_TRIALS:
        return SamplerChoice("gp", f"numeric space ({', '.join(numeric)}) and {trials} trials <= {GP_MAX_TRIALS}: "
                             "GP is the most sample-efficient", startup)
    after = "cmaes" if len(numeric) >= 2 else "tpe"
    return SamplerChoice(
        f"gp-{after}",  # type: ignore[arg-type]
        f"numeric space ({', '.join(numeric)}) and {trials} trials: GP for the first {GP_MAX_TRIALS} finished "
        f"trials, then {'CMA-ES warm-started from them' if after == 'cmaes' else 'TPE'}, as GP's cost per "
        "suggestion grows with the cube of the trials", startup, switch_after=GP_MAX_TRIALS)


def _multi_objective(config: SweepConfig, trials: int, startup: int) -> SamplerChoice:
    count = len(config.objectives)
    if reason := _not_numeric(config):
        return SamplerChoice("tpe", f"{count} objectives and {reason}: multi-objective TPE", startup)
    if count >= MANY_OBJECTIVES:
        return SamplerChoice("tpe", f"{count} objectives (>= {MANY_OBJECTIVES}): multi-objective TPE", startup)
    if trials <= GP_MAX_TRIALS:
        return SamplerChoice("gp", f"{count} objectives over a numeric space and {trials} trials <= "
                             f"{GP_MAX_TRIALS}: multi-objective GP", startup)
    return SamplerChoice("nsga2", f"{count} objectives and {trials} trials > {GP_MAX_TRIALS}: NSGA-II scales "
                         "where GP's cost per suggestion would not", startup)


def _not_numeric(config: SweepConfig) -> str:
    """Why the space is not purely numeric ('' when it is): its categorical and conditional parameters."""
    categorical = [n for n, p in config.parameters.items() if isinstance(p, Choice)]
    conditional = [n for n, p in config.parameters.items() if isinstance(p, Choice | Range) and p.when]
    parts = []
    if categorical:
        parts.append(f"categorical parameters ({', '.join(categorical)})")
    if conditional:
        parts.append(f"conditional parameters ({', '.join(conditional)})")
    return " and ".join(parts)


def _numeric(config: SweepConfig) -> list[str]:
    return [n for n, p in config.parameters.items() if isinstance(p, Range)]


def unrecorded_sampler_change(tags: Mapping[str, str], config: SweepConfig) -> str | None:
    """Why resuming would silently change the sampler of a bayes sweep stored before ``sampler: auto``
    (its parent run has ``hpo.sampler`` but no ``hpo.sampler_requested``: a file without ``sampler:`` then
    meant tpe), or None when it would not. Sweeps since record what was asked, and ask it again."""
    ran = tags.get(schema.SAMPLER)
    if config.method != "bayes" or ran is None or schema.SAMPLER_REQUESTED in tags:
        return None
    now = choose(config).name
    if now == ran:
        return None
    return (f"sampler: sweep {config.name} ran with {ran} (the default before `sampler: auto`), and auto would "
            f"now pick {now}; resume it with `sampler: {ran}` in the file (or --set sampler={ran}), "
            "or start over with --new")
