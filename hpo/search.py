"""Search algorithm and scheduler for a sweep: every method goes through Ray Tune's OptunaSearch.

grid -> GridSampler over the enumerated points; random -> RandomSampler; bayes -> TPE (multivariate,
group-aware for conditional spaces, constant liar for concurrent trials), GP, CMA-ES or NSGA-II. A
multi-objective sweep gives OptunaSearch one metric and mode per objective (TPE, GP and NSGA-II are
multi-objective in Optuna; CMA-ES is refused by ``hpo.rules``). Early stopping
is ASHA, asynchronous Hyperband (ASHA over several brackets, which never pauses trials) or the median
stopping rule. Trials a scheduler stops are told to Optuna as PRUNED, failed trials as FAIL.
Classes live at module level because Ray pickles the searcher into its experiment state.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import optuna
from ray.tune.schedulers import ASHAScheduler, FIFOScheduler, MedianStoppingRule, TrialScheduler
from ray.tune.search import Searcher
from ray.tune.search.optuna import OptunaSearch

from hpo import space, unvisited
from hpo.config import SweepConfig
from hpo.objectives import objective_key
from hpo.trial_book import TrialBook
from hpo.trial_keys import BEST_KEY

if TYPE_CHECKING:
    from hpo.resume import ResumePlan


class GridIndexSampler(optuna.samplers.GridSampler):
    """Optuna's GridSampler without its ``study.stop()`` after the last point.

    ``Study.stop`` raises outside ``study.optimize``, and Ray tells Optuna every result outside it: the
    last grid trial's ``tell`` raised, which failed that trial when the scheduler had stopped it early.
    Ray already ends the sweep after ``num_samples`` = the number of points.
    """

    def after_trial(self, study: Any, trial: Any, state: Any, values: Any) -> None:
        return None

    def before_trial(self, study: Any, trial: Any) -> None:
        """Optuna gives trial N grid point N; in a resumed sweep (``hpo.resume``) that point may be done
        already: take the lowest point not yet run or running instead."""
        if "grid_id" not in trial.system_attrs and "fixed_params" not in trial.system_attrs:
            unvisited = sorted(self._get_unvisited_grid_ids(study))
            if unvisited and trial.number not in unvisited:
                study._storage.set_trial_system_attr(trial._trial_id, "search_space", self._search_space)
                study._storage.set_trial_system_attr(trial._trial_id, "grid_id", unvisited[0])
                return
        super().before_trial(study, trial)


def make_sampler(config: SweepConfig, trials: int) -> optuna.samplers.BaseSampler:
    """The Optuna sampler for the sweep's method, seeded with ``config.seed``.

    A finite space with no more points than ``trials`` runs as a grid; a larger finite one is sampled
    without exact repeats (``unvisited.avoid_repeats``).
    """
    if space.runs_every_point(config, trials):
        points = space.grid_points(config)
        return GridIndexSampler({space.GRID_INDEX: list(range(len(points)))}, seed=config.seed)
    return unvisited.avoid_repeats(config, _method_sampler(config, trials))


def _method_sampler(config: SweepConfig, trials: int) -> optuna.samplers.BaseSampler:
    seed = config.seed
    name = config.sampler_name
    if name == "random":
        return optuna.samplers.RandomSampler(seed=seed)
    startup = min(10, max(3, trials // 4))  # the default 10 would make short sweeps pure random
    if name == "gp":
        return optuna.samplers.GPSampler(seed=seed, n_startup_trials=startup)
    if name == "cmaes":
        return optuna.samplers.CmaEsSampler(seed=seed, n_startup_trials=startup)
    if name == "nsga2":  # multi-objective genetic search; generations of at least 4 so short sweeps evolve
        return optuna.samplers.NSGAIISampler(seed=seed, population_size=max(4, min(50, trials // 4)))
    return optuna.samplers.TPESampler(
        seed=seed, n_startup_trials=startup, multivariate=True, group=True, constant_liar=True
    )


class PruningOptunaSearch(OptunaSearch):  # type: ignore[misc]
    """OptunaSearch that tells Optuna FAIL for failed trials and PRUNED for early-stopped ones.

    Ray's own class tells COMPLETE with the last epoch's value in both cases.
    """

    def __init__(self, *args: Any, book: TrialBook, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.book = book

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        """Ray's suggestion, remembering the Optuna trial number (the order of proposal) of ``trial_id``.

        Concurrent trials start in whatever order their workers come up; numbering them by proposal
        keeps trial N the N-th configuration the seeded sampler proposed.
        """
        config: dict[str, Any] | None = super().suggest(trial_id)
        proposed = self._ot_trials.get(trial_id)
        if proposed is not None:
            self.book.assign(trial_id, proposed.number, proposed.params)
        return config

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        if error:
            result = None
        elif self.book.is_stopped(trial_id) and trial_id in self._ot_trials and self._ot_study is not None:
            self._ot_study.tell(self._ot_trials[trial_id], state=optuna.trial.TrialState.PRUNED)
            self._completed_trials.add(trial_id)
            return
        super().on_trial_complete(trial_id, result=result, error=error)


def make_searcher(
    config: SweepConfig, trials: int, book: TrialBook, prior: ResumePlan | None = None
) -> PruningOptunaSearch:
    """OptunaSearch over the sweep's space, optimising the running best of the sweep metric (several
    objectives: each one's value at the first objective's best epoch, ``hpo.objectives``).

    ``book`` gets each trial's number (its order of proposal) as configurations are proposed, and tells
    which trials the scheduler stopped early (told to Optuna as PRUNED). ``prior``: a resumed sweep's
    stored trials, added to the study before the first proposal (``hpo.resume.rebuild_study``).
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # group=True
    space_fn = (
        space.grid_space(space.grid_points(config)) if space.runs_every_point(config, trials)
        else space.define_by_run(config)
    )
    metric: str | list[str] = BEST_KEY
    mode: str | list[str] = config.metric.mode
    if config.multi_objective:  # one value per objective, all from the first objective's best epoch
        metric = [objective_key(i, m.name) for i, m in enumerate(config.objectives)]
        mode = [m.mode for m in config.objectives]
    searcher = PruningOptunaSearch(
        space=space_fn, metric=metric, mode=mode, sampler=make_sampler(config, trials), book=book,
    )
    if prior is not None:
        from hpo.resume import rebuild_study

        rebuild_study(searcher._ot_study, space_fn, prior, book)
    return searcher


class FixedConfigs(Searcher):  # type: ignore[misc]
    """Proposes the given configurations in order, numbered 0.. in ``book``, then says it is finished.

    The searcher of a confirmation pass (``hpo.confirm``): the configurations are fixed, nothing is learnt.
    """

    def __init__(self, configs: list[dict[str, Any]], book: TrialBook) -> None:
        super().__init__()
        self.configs = [dict(c) for c in configs]
        self.book = book
        self.proposed = 0

    def suggest(self, trial_id: str) -> dict[str, Any] | None:
        if self.proposed >= len(self.configs):
            return Searcher.FINISHED  # type: ignore[return-value]  # Tune's documented end-of-search marker
        self.book.set_number(trial_id, self.proposed)
        self.proposed += 1
        return dict(self.configs[self.proposed - 1])

    def on_trial_complete(self, trial_id: str, result: dict[str, Any] | None = None, error: bool = False) -> None:
        return None


class _RecordStops:
    """Mixin: remember the trials the scheduler ends before their last epoch."""

    book: TrialBook
    fixed_epochs: int

    def on_trial_result(self, controller: Any, trial: Any, result: dict[str, Any]) -> str:
        decision: str = super().on_trial_result(controller, trial, result)  # type: ignore[misc]
        epochs = int(trial.config.get("epochs", self.fixed_epochs))
        if decision == TrialScheduler.STOP and result.get("training_iteration", 0) < epochs:
            self.book.mark_stopped(trial.trial_id)
        return decision


class RecordingASHA(_RecordStops, ASHAScheduler):  # type: ignore[misc]
    def __init__(self, *, book: TrialBook, fixed_epochs: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.book, self.fixed_epochs = book, fixed_epochs


class RecordingMedian(_RecordStops, MedianStoppingRule):  # type: ignore[misc]
    def __init__(self, *, book: TrialBook, fixed_epochs: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.book, self.fixed_epochs = book, fixed_epochs


def make_scheduler(
    config: SweepConfig, book: TrialBook, fixed_epochs: int, prior: ResumePlan | None = None
) -> TrialScheduler:
    """The early-stopping scheduler; it marks in ``book`` the trials it ends early. ``prior``: a resumed
    sweep's stored trials, whose per-epoch values the scheduler learns first (``hpo.resume.prime_scheduler``)."""
    scheduler = _scheduler(config, book, fixed_epochs)
    if prior is not None:
        from hpo.resume import prime_scheduler

        prime_scheduler(scheduler, prior)
    return scheduler


def _scheduler(config: SweepConfig, book: TrialBook, fixed_epochs: int) -> TrialScheduler:
    rule = config.early_stop
    metric, mode = config.metric.name, config.metric.mode
    max_t = config.max_epochs
    if rule.type == "none":
        return FIFOScheduler()
    if rule.type in ("asha", "hyperband"):
        return RecordingASHA(
            book=book, fixed_epochs=fixed_epochs,
            time_attr="training_iteration", metric=metric, mode=mode, max_t=max_t,
            grace_period=min(rule.grace_epochs, max_t), reduction_factor=rule.reduction_factor,
            brackets=rule.brackets if rule.type == "hyperband" else 1,
        )
    return RecordingMedian(
        book=book, fixed_epochs=fixed_epochs, time_attr="training_iteration", metric=metric, mode=mode,
        grace_period=rule.grace_epochs, min_samples_required=3,
    )
