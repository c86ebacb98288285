"""The one caller of ``tune.Tuner``: a search pass (the sampler's trials) and a fixed pass (given configurations,
``hpo.confirm``), both with the sweep's trainable, resources, timeouts and retries, tracked by the driver."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from hpo import defaults
from hpo.cluster import cluster_need, trial_resources
from hpo.config import SweepConfig
from hpo.trial_book import TrialBook
from hpo.trial_state import states_folder

if TYPE_CHECKING:  # Ray Tune (~1 s to import) loads on the store's thread while Ray starts: hpo.runner
    from hpo.callbacks import Progress, TrialTracker
    from hpo.resume import ResumePlan
    from hpo.startup import PhaseClock


def fit_search(
    config: SweepConfig,
    trials: int,
    tracker: TrialTracker,
    progress: Progress,
    cluster_cpus: float,
    plan: ResumePlan | None = None,
    clock: PhaseClock | None = None,
) -> None:
    """Run the Tuner on the Ray session the runner opened (on a resume, the trials still to run);
    ``clock`` marks the Tuner's start-up phases (``hpo run --verbose``)."""
    from hpo.search import make_scheduler, make_searcher

    fixed_epochs = int(tracker.fixed.get("epochs", config.trainer.epochs))
    tune_pass(
        config, tracker, progress, cluster_cpus,
        searcher=lambda book: make_searcher(config, trials, book, plan),
        scheduler=lambda book: make_scheduler(config, book, fixed_epochs, plan),
        num_samples=plan.to_start if plan is not None else trials,
        time_budget_s=plan.time_left_s if plan is not None else config.budget.time_limit_s,
        name=config.name, clock=clock, keep_states=True,
        resume_keys=plan.resume_keys() if plan is not None else frozenset(),
    )


def fit_fixed(
    config: SweepConfig, cluster_cpus: float, stream: Any, tracker: TrialTracker, configs: list[dict[str, Any]]
) -> None:
    """One more Tuner pass over fixed ``configs`` (``hpo.confirm``): same trainable, resources, timeouts and
    retries as the search; no sampler, no early stopping, no time budget."""
    from ray.tune.schedulers import FIFOScheduler

    from hpo.callbacks import Progress
    from hpo.search import FixedConfigs

    progress = Progress(tracker, len(configs), config.metric.goal, config.metric.name, stream, noun="confirm runs")
    tune_pass(config, tracker, progress, cluster_cpus, searcher=lambda book: FixedConfigs(configs, book),
          scheduler=lambda book: FIFOScheduler(), num_samples=len(configs), time_budget_s=None,
          name=f"{config.name}-confirm")


def tune_pass(
    config: SweepConfig,
    tracker: TrialTracker,
    progress: Progress,
    cluster_cpus: float,
    *,
    searcher: Callable[[TrialBook], Any],
    scheduler: Callable[[TrialBook], Any],
    num_samples: int,
    time_budget_s: float | None,
    name: str,
    clock: PhaseClock | None = None,
    keep_states: bool = False,
    resume_keys: frozenset[str] = frozenset(),
) -> None:
    """The one ``tune.Tuner`` of the project: ``num_samples`` trials of the sweep's trainable, tracked by
    ``tracker``; ``searcher`` and ``scheduler`` are built on the trial book the tracker reads.

    ``keep_states``: the built-in loop keeps each trial's resumable state (``hpo.trial_state``) so a trial
    killed with the driver continues from its last epoch; ``resume_keys``: the states re-runs continue from.
    """
    from ray import tune

    from hpo.relay import Relay, client_connected, cluster_storage_path
    from hpo.timeouts import TrialTimeouts
    from hpo.trainable import make_trainable

    per_trial = config.resources.cpu
    need_cpu, _ = cluster_need(config.workers, per_trial, config.resources.gpu)
    concurrent = config.budget.max_concurrent or max(1, min(num_samples, int(cluster_cpus // need_cpu) or 1))

    relay = None
    book: TrialBook
    callbacks: list[Any]
    if client_connected():  # the Tuner will run on the head: relay its events back to this process
        relay = Relay(tracker, progress)
        book, callbacks = relay.book, [relay.callback]
        storage = cluster_storage_path()
    else:
        book, callbacks, storage = tracker.book, [tracker, progress], str(defaults.ray_storage())
    # beside Tune's controller (on the head under Ray Client): only it can end a trial that never reports again
    callbacks.append(TrialTimeouts(book, config.budget.trial_timeout_s, config.budget.report_timeout_s))
    if clock is not None and relay is None:  # under Ray Client the callbacks run on the head
        callbacks.append(clock.first_result_callback())

    states = states_folder(storage, tracker.logger.parent_run_id) if keep_states and storage is not None else None
    trainable = make_trainable(
        task=config.trainer.task, function=config.trainer.function, fixed=tracker.fixed,
        user_parts=config.trainer.user_parts,
        metric=config.metric.name, goal=config.metric.goal, threads=trial_threads(config),
        workers=config.workers, resources=config.resources.model_dump(),
        objectives=[(m.name, m.goal) for m in config.objectives],
        states=states, resume_keys=resume_keys,
    )
    tuner = tune.Tuner(
        tune.with_resources(trainable, trial_resources(config.workers, per_trial, config.resources.gpu)),
        tune_config=tune.TuneConfig(
            search_alg=searcher(book),
            scheduler=scheduler(book),
            num_samples=num_samples,
            max_concurrent_trials=concurrent,
            time_budget_s=time_budget_s,
            # a fresh worker spends ~1.7 s importing torch; a DDP trial's Train run must end with its actor
            reuse_actors=config.workers == 1,
        ),
        run_config=tune.RunConfig(
            name=f"{name}-{int(time.time())}",
            storage_path=storage,
            callbacks=callbacks,
            verbose=0,
            checkpoint_config=tune.CheckpointConfig(num_to_keep=1),  # trainers save only improvements
            failure_config=tune.FailureConfig(max_failures=config.budget.max_failures),
        ),
    )
    if clock is not None:
        clock.mark("tuner built")
    # trial errors do not raise: each failed trial was recorded by the tracker
    if relay is not None:
        relay.run(tuner.fit)
    else:
        tuner.fit()
        if states is not None:  # every trial ended: no state is needed any more (kept when interrupted)
            shutil.rmtree(states, ignore_errors=True)


def trial_threads(config: SweepConfig) -> int:
    """The torch threads each trial trains with (``resources.cpu``, at least 1); recorded as ``hpo.threads``."""
    return max(1, int(config.resources.cpu))
