"""Resume a sweep that did not finish, from what the store holds: find it, check it, rebuild its search.

The store is the source of truth. :func:`plan_resume` finds the latest sweep of a name, refuses a sweep
file that would change its search, and sorts its stored trials into the ones that ended (kept as they
are and shown to the sampler and the scheduler) and the ones a dead or interrupted driver left behind
(closed KILLED, ``hpo.stopped_by: crash``, and run again with the same parameters and trial number).
:func:`rebuild_study` adds the ended trials to the Optuna study that Ray's OptunaSearch asks, with
their distributions, values, states and per-epoch values (``add_evaluated_point`` refuses define-by-run
spaces, and GridSampler needs its ``grid_id``), and queues the configurations to re-run;
:func:`prime_scheduler` feeds ASHA's rungs and the median rule the ended trials' per-epoch values.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo import rules, space
from hpo.config import SweepConfig, flatten
from hpo.diagnosis import diagnose_trial, task_classes, task_val_size
from hpo.errors import ConfigError
from hpo.lease import check_remote_driver
from hpo.objectives import Objective, objective_values
from hpo.results import TrialRecord
from hpo.sampler_choice import unrecorded_sampler_change
from hpo.stored_history import epoch_history, stitch_reruns
from hpo.trial_book import TrialBook, params_key
from tracker import schema
from tracker.liveness import live_state
from tracker.params import parse_param

if TYPE_CHECKING:
    from tracker.mlflow_log import SweepLogger

# Fields whose change alters the search or the trials; the budget's trials and time limit may only grow.
_SEARCH_FIELDS = ("parameters", "method", "sampler", "metric", "seed", "trainer", "early_stop")
_GROWABLE = ("budget.trials", "budget.time_limit_s")
_SUMMARY = (schema.BEST_PREFIX, schema.FINAL_PREFIX, schema.EPOCHS_RUN)


@dataclass
class StoredTrial:
    """One trial run as the store holds it."""

    run_id: str
    number: int
    trial_id: str
    status: str  # MLflow status: RUNNING | FINISHED | FAILED | KILLED
    tags: dict[str, str]
    params: dict[str, Any]
    history: dict[str, list[float | None]]
    metrics: dict[str, float]
    start_ms: int = 0

    @property
    def early_stopped(self) -> bool:
        """Stopped by the sweep's scheduler: an ended trial (time limits and crashes are not)."""
        return (self.status == "KILLED" and self.tags.get(schema.EARLY_STOPPED) == "true"
                and self.tags.get(schema.STOPPED_BY) in schema.STOPPED_BY_SCHEDULERS)

    @property
    def ended(self) -> bool:
        """Finished, failed or stopped early: kept as it is on resume."""
        return self.status in ("FINISHED", "FAILED") or self.early_stopped

    def record(self, metric: str) -> TrialRecord:
        """The driver's record of this stored trial (the leaderboard and the sweep summary read it)."""
        best = self.metrics.get(schema.BEST_PREFIX + metric)
        final = self.metrics.get(schema.FINAL_PREFIX + metric)
        epochs = int(self.metrics.get(schema.EPOCHS_RUN) or max((len(v) for v in self.history.values()), default=0))
        error = self.tags.get(schema.ERROR)
        history = {k: list(v) for k, v in self.history.items()}
        # the one diagnosis path, so the leaderboard and the sweep's summary count the kept trials too
        diagnosis = diagnose_trial(history, status=self.status, error=error, params=self.params,
                                   n_classes=task_classes(self.tags.get(schema.TASK)),
                                   stopped_early=self.early_stopped,
                                   val_size=task_val_size(self.tags.get(schema.TASK), self.params))
        return TrialRecord(
            self.trial_id, self.number, self.run_id, dict(self.params), status=self.status,
            early_stopped=self.early_stopped, best=best, final=final, epochs=epochs, error=error,
            history=history, diagnosis=diagnosis,
        )


@dataclass
class ResumePlan:
    """What resuming one stored sweep means: which run, what is kept, what runs again, what is left."""

    sweep: str
    parent_run_id: str
    experiment_id: str
    state: str  # the stored state as readers show it (crashed for a dead driver)
    metric: str
    goal: str
    budget: int  # trials the sweep runs in all
    ended: list[StoredTrial]
    rerun: list[StoredTrial]
    stale: list[StoredTrial] = field(default_factory=list)  # left RUNNING and superseded: closed, not re-run
    elapsed_s: float = 0.0
    time_left_s: float | None = None
    resumes: int = 0
    grid: list[dict[str, Any]] | None = None  # the grid's points when the sweep runs every point
    objectives: list[Objective] = field(default_factory=list)  # (name, goal) each; 2+: a multi-objective study

    @property
    def to_start(self) -> int:
        """Trials Tune runs on this resume: the re-runs first, then new ones up to the budget."""
        return max(0, self.budget - len(self.ended))

    @property
    def nothing_to_do(self) -> bool:
        """A finished sweep whose budget was not raised (or whose time is spent: see ``left_open``)."""
        spent = self.time_left_s is not None and self.time_left_s <= 0
        return (self.state == "finished" and self.to_start == 0) or spent

    @property
    def left_open(self) -> bool:
        """A dead driver left the parent run or a trial run RUNNING: it must be closed, even with nothing to do."""
        return self.state == "crashed" or any(t.status == "RUNNING" for t in [*self.rerun, *self.stale])

    def message(self) -> str:
        """What the user is told on stderr."""
        done = f"{len(self.ended)} of {self.budget} trials done"
        if self.time_left_s is not None and self.time_left_s <= 0:
            closed = "; the runs its dead driver left open are closed" if self.left_open else ""
            return (f"sweep {self.sweep} has used its time budget ({self.elapsed_s:.0f} s): {done}; nothing to do "
                    f"(raise budget.time_limit_s to continue it, or run with --new for a fresh sweep){closed}")
        if self.nothing_to_do:
            return (f"sweep {self.sweep} already finished: {done}; nothing to do "
                    "(raise budget.trials to extend it, or run with --new for a fresh sweep)")
        new = self.to_start - len(self.rerun)
        extra = f", {new} new" if new > 0 and self.state == "finished" else ""
        return (f"resuming sweep {self.sweep} ({self.state}, run {self.parent_run_id}): {done}, "
                f"{len(self.rerun)} to re-run{extra}")

    def records(self) -> dict[str, TrialRecord]:
        """The ended trials as driver records, keyed apart from Ray's trial ids."""
        return {f"stored:{t.run_id}": t.record(self.metric) for t in self.ended}

    def fill_book(self, book: TrialBook) -> None:
        """Tell ``book`` the numbers the store holds and the configurations that keep theirs."""
        book.taken.update(t.number for t in self.ended)
        for trial in self.rerun:
            book.replaces[trial.number] = trial.run_id
            chain = [t for t in (*self.rerun, *self.stale) if t.number == trial.number]
            book.logged_epochs[trial.number] = max((len(v) for t in chain for v in t.history.values()), default=0)

    def resume_keys(self) -> frozenset[str]:
        """The ``hpo.trial_state`` keys of the trials to re-run: their saved states are continued."""
        from hpo.trial_state import state_key
        from tracker.params import param_text

        return frozenset(state_key({k: param_text(v) for k, v in t.params.items()}) for t in self.rerun)


# -- finding -----------------------------------------------------------------------------------------
def latest_sweep_run(client: Any, experiment_ids: list[str], name: str) -> Any | None:
    """The newest parent run of kind sweep tagged ``hpo.sweep = name`` in ``experiment_ids``, or None."""
    if not experiment_ids:
        return None
    runs = client.search_runs(
        experiment_ids, filter_string=f"tags.`{schema.SWEEP}` = '{name}'",
        order_by=["attributes.start_time DESC"], max_results=50,
    )
    sweeps = [r for r in runs if schema.run_kind(r.data.tags) == schema.KIND_SWEEP]
    return sweeps[0] if sweeps else None


def find_sweep_run(client: Any, target: str, source: str = "hpo resume") -> Any:
    """The sweep parent run named by ``target``: a run id, else the latest sweep of that name anywhere.

    Raises:
        ConfigError: no such sweep in the store.
    """
    try:
        run = client.get_run(target)
    except Exception:  # noqa: BLE001 - not a run id (MLflow raises its own error types per store)
        run = None
    if run is not None and schema.run_kind(run.data.tags) == schema.KIND_SWEEP:
        return run
    experiments = [e.experiment_id for e in client.search_experiments()]
    found = latest_sweep_run(client, experiments, target)
    if found is None:
        raise ConfigError(f"no sweep named or with run id {target!r} in the store; `hpo best` lists by name",
                          source=source)
    return found


def stored_sweep_file(client: Any, run: Any, folder: str) -> Path:
    """Download the sweep file stored on a sweep's parent run into ``folder``."""
    return Path(client.download_artifacts(run.info.run_id, schema.SWEEP_FILE_ARTIFACT, folder))


def stored_sweep(client: Any, run: Any, overrides: Mapping[str, str]) -> tuple[SweepConfig, str]:
    """What ``hpo resume`` runs: the config the sweep ran with, ``overrides`` on top, and its sweep file's text.

    The config comes from the stored ``resolved_config.json`` (the file with the ``--set`` values it ran
    with, and any budget a resume raised), validated as a file is: rebuilding it from ``sweep.yaml``
    would lose those and be refused as a changed search. The text is the sweep file as first given, logged
    again unchanged (``resolved_config.json`` is where the overrides show).

    Raises:
        ConfigError: the stored config cannot be read, or breaks a rule with ``overrides``.
    """
    from hpo.loading import validate_stored

    name = run.data.tags.get(schema.SWEEP, run.info.run_id)
    raw = _resolved_config(client, run, name)
    with tempfile.TemporaryDirectory() as folder:
        try:
            text = stored_sweep_file(client, run, folder).read_text(encoding="utf-8")
        except Exception as e:  # noqa: BLE001 - MLflow raises its own error types per artifact store
            raise ConfigError(f"sweep {name} (run {run.info.run_id}) has no readable {schema.SWEEP_FILE_ARTIFACT} "
                              f"({e}); run its sweep file with `hpo run --new`", source="hpo resume") from None
    source = f"{schema.RESOLVED_CONFIG_ARTIFACT} of sweep run {run.info.run_id}"
    return validate_stored(raw, overrides, source=source), text


# -- planning ----------------------------------------------------------------------------------------
def plan_resume(client: Any, config: SweepConfig, *, run_id: str | None = None) -> ResumePlan | None:
    """The plan to continue the latest sweep named ``config.name``, or None when there is none to continue.

    Args:
        client: an ``MlflowClient`` on the sweep's store.
        config: the sweep file as given now.
        run_id: resume this parent run instead of the latest of that name.

    Returns:
        None when the store has no sweep of that name (a fresh sweep starts); else the plan (which may
        say ``nothing_to_do``).

    Raises:
        ConfigError: the file changes the search (names the fields); a driver on another host holds it.
    """
    if run_id is not None:
        run = client.get_run(run_id)
    else:
        experiment = client.get_experiment_by_name(config.experiment_name)
        if experiment is None or experiment.lifecycle_stage == "deleted":
            return None
        run = latest_sweep_run(client, [experiment.experiment_id], config.name)
    if run is None:
        return None
    tags = dict(run.data.tags)
    stored_state = tags.get(schema.SWEEP_STATE) or {"RUNNING": "running", "FINISHED": "finished"}.get(
        run.info.status, "interrupted")
    check_remote_driver(tags, stored_state, config.name)
    _check_same_search(client, run, config)
    trials = stored_trials(client, run.info.experiment_id, run.info.run_id)
    ended, rerun, stale = _sort_trials(trials)
    budget = rules.trials_planned(config)
    elapsed = float(tags.get(schema.ELAPSED_S) or 0.0)
    limit = config.budget.time_limit_s
    plan = ResumePlan(
        sweep=config.name, parent_run_id=run.info.run_id, experiment_id=run.info.experiment_id,
        state="crashed" if stored_state == "running" else live_state(stored_state, tags),
        metric=config.metric.name, goal=config.metric.goal, budget=budget, ended=ended,
        rerun=rerun[: max(0, budget - len(ended))], stale=stale + rerun[max(0, budget - len(ended)):],
        elapsed_s=elapsed, time_left_s=None if limit is None else limit - elapsed,
        resumes=int(tags.get(schema.RESUMES) or 0),
        grid=space.grid_points(config) if space.runs_every_point(config, budget) else None,
        objectives=[(m.name, str(m.goal)) for m in config.objectives],
    )
    return plan


def _check_same_search(client: Any, run: Any, config: SweepConfig) -> None:
    """Refuse a sweep file that differs from the stored one in what changes the search or the trials."""
    if (changed := unrecorded_sampler_change(run.data.tags, config)) is not None:
        raise ConfigError(changed, source="resume")
    stored = _resolved_config(client, run, config.name)
    differ = changed_fields(stored, config.model_dump(mode="json"))
    if differ:
        shown = ", ".join(differ[:8]) + (f" and {len(differ) - 8} more" if len(differ) > 8 else "")
        raise ConfigError(
            f"the sweep file differs from the one sweep {config.name} (run {run.info.run_id}) ran with in {shown}: "
            "resuming would change its search; only raising budget.trials or budget.time_limit_s is allowed. "
            "Run with --new to start a fresh sweep of this name", source="resume")


def _resolved_config(client: Any, run: Any, name: str) -> dict[str, Any]:
    """The ``resolved_config.json`` stored on a sweep's parent run: the config it ran with.

    Raises:
        ConfigError: it is missing or not a JSON mapping (such a sweep cannot be checked, so not resumed).
    """
    with tempfile.TemporaryDirectory() as folder:
        try:
            path = client.download_artifacts(run.info.run_id, schema.RESOLVED_CONFIG_ARTIFACT, folder)
            stored = json.loads(Path(path).read_text(encoding="utf-8"))
        except Exception as e:  # noqa: BLE001 - MLflow raises its own error types per artifact store
            stored, why = None, str(e)
        else:
            why = f"a JSON {type(stored).__name__}, not a mapping"
    if not isinstance(stored, dict):
        raise ConfigError(f"sweep {name} (run {run.info.run_id}) has no readable {schema.RESOLVED_CONFIG_ARTIFACT} "
                          f"({why}); run with --new to start a fresh sweep", source="resume")
    return stored


def changed_fields(stored: Mapping[str, Any], now: Mapping[str, Any]) -> list[str]:
    """Dotted names of the fields that differ in a way resuming cannot honour (see ``_SEARCH_FIELDS``)."""
    old, new = flatten(stored, keep_empty=True), flatten(now, keep_empty=True)
    out = []
    for key in sorted(set(old) | set(new)):
        if not key.startswith(_SEARCH_FIELDS) and key not in _GROWABLE:
            continue
        a, b = old.get(key), new.get(key)
        if a == b:
            continue
        if key in _GROWABLE and a is not None and (b is None and key.endswith("time_limit_s")
                                                   or b is not None and float(b) >= float(a)):
            continue  # a raised budget (or no time limit any more) extends the sweep
        if key == "budget.trials" and a is None and b is not None:  # grid: the planned count did not change
            continue
        out.append(key)
    return out


def stored_trials(
    client: Any, experiment_id: str, parent_run_id: str, kind: schema.RunKind = schema.KIND_TRIAL
) -> list[StoredTrial]:
    """Every trial run (or run of another ``kind``: ``confirm``) of a sweep with its tags, typed params and
    per-epoch history."""
    runs = client.search_runs(
        [experiment_id], filter_string=f"tags.`{schema.PARENT_RUN_ID}` = '{parent_run_id}'", max_results=10000,
    )
    out = []
    for run in runs:
        tags = dict(run.data.tags)
        if schema.run_kind(tags) != kind:
            continue
        number = tags.get(schema.TRIAL_NUMBER)
        history = epoch_history(client, run, _SUMMARY)
        out.append(StoredTrial(
            run_id=run.info.run_id, number=int(number) if number and number.isdigit() else -1,
            trial_id=tags.get(schema.TRIAL_ID, ""), status=run.info.status, tags=tags,
            params={k: parse_param(v) for k, v in run.data.params.items()}, history=history,
            metrics=dict(run.data.metrics), start_ms=int(run.info.start_time or 0),
        ))
    stitch_reruns(out)
    return out


def _sort_trials(trials: list[StoredTrial]) -> tuple[list[StoredTrial], list[StoredTrial], list[StoredTrial]]:
    """Split into ended trials (kept), trials to re-run (one per number) and stale runs (closed only).

    Per trial number the newest run counts; a run already replaced, or superseded by a newer run of its
    number, is not looked at again (a RUNNING one of those is closed).
    """
    by_number: dict[int, list[StoredTrial]] = {}
    stale: list[StoredTrial] = []
    for trial in trials:
        if trial.number < 0 or schema.REPLACED_BY in trial.tags:
            if trial.status == "RUNNING":
                stale.append(trial)
            continue
        by_number.setdefault(trial.number, []).append(trial)
    ended: list[StoredTrial] = []
    rerun: list[StoredTrial] = []
    for number in sorted(by_number):
        runs = sorted(by_number[number], key=lambda t: (t.ended, t.start_ms))  # an ended run wins
        current = runs[-1]
        stale.extend(t for t in runs[:-1] if t.status == "RUNNING")
        (ended if current.ended else rerun).append(current)
    return ended, rerun, stale


# -- rebuilding the search -----------------------------------------------------------------------------
def rebuild_study(study: Any, space_fn: Callable[[Any], Any], plan: ResumePlan, book: TrialBook) -> None:
    """Add the plan's ended trials to ``study`` and queue its re-runs, so the search goes on where it was.

    Each ended trial becomes a finished Optuna trial (params with their distributions, the values Optuna
    was told and per-epoch intermediate values; COMPLETE, PRUNED or FAIL). Single objective: the running
    best as value. Several objectives: each objective's value at the first objective's best epoch (what
    the trainable reported, ``hpo.objectives``), no intermediate values (Optuna keeps none for such a
    study), and FAIL when one is missing (as Optuna recorded it). Grid trials carry GridSampler's
    ``grid_id`` so it proposes exactly the points not yet run; other re-runs are enqueued so they are the
    first proposals. ``book`` learns which configuration to re-run under which number (``requeued``); the
    numbers the store holds (``ResumePlan.fill_book``) are the caller's to write, once.
    """
    import optuna

    search_space = getattr(study.sampler, "_search_space", None)
    for trial in plan.ended:
        params, distributions, grid_id = _optuna_params(trial, space_fn, plan.grid)
        if params is None:
            continue  # a point no longer in the space (cannot happen with an unchanged file): not shown
        state, values, curve = _told(trial, plan)
        system_attrs = {} if grid_id is None else {
            # GridSampler's grid_id is a position in its own (seeded, shuffled) list of points
            "grid_id": list(study.sampler._all_grids).index((grid_id,)), "search_space": search_space,
        }
        study.add_trial(optuna.trial.create_trial(
            params=params, distributions=distributions, values=values, state=state,
            intermediate_values=curve, system_attrs=system_attrs,
        ))
    for trial in plan.rerun:
        params, _, grid_id = _optuna_params(trial, space_fn, plan.grid)
        if params is None:
            continue
        book.requeued[params_key(params)] = trial.number
        if grid_id is None:  # GridSampler proposes the unrun points itself; the others need a queue
            study.enqueue_trial(params)


def _told(trial: StoredTrial, plan: ResumePlan) -> tuple[Any, list[float] | None, dict[int, float]]:
    """The state, values and intermediate values Optuna recorded for an ended trial when it ran."""
    from optuna.trial import TrialState

    if len(plan.objectives) > 1:
        told = objective_values(trial.history, plan.objectives) if trial.status == "FINISHED" else None
        if told is not None:
            return TrialState.COMPLETE, [told[name] for name, _ in plan.objectives], {}
        # a missing objective is a failure to Optuna; a multi-objective sweep has no scheduler to stop trials
        return TrialState.FAIL if trial.status in ("FINISHED", "FAILED") else TrialState.PRUNED, None, {}
    curve = _running_best(trial.history.get(plan.metric, []), plan.goal == "maximize")
    best = trial.metrics.get(schema.BEST_PREFIX + plan.metric)
    if trial.status == "FAILED":
        return TrialState.FAIL, None, curve
    if trial.status == "FINISHED" and best is not None and math.isfinite(best):
        return TrialState.COMPLETE, [best], curve
    return TrialState.PRUNED, None, curve


def _optuna_params(
    trial: StoredTrial, space_fn: Callable[[Any], Any], grid: list[dict[str, Any]] | None
) -> tuple[dict[str, Any] | None, dict[str, Any], int | None]:
    """The Optuna params and distributions of a stored trial (and its grid index in a grid sweep)."""
    import optuna

    if grid is not None:
        for index, point in enumerate(grid):
            if all(_same(trial.params.get(k), v) for k, v in point.items()):
                dist = optuna.distributions.CategoricalDistribution(list(range(len(grid))))
                return {space.GRID_INDEX: index}, {space.GRID_INDEX: dist}, index
        return None, {}, None
    # Let the space itself say which of the stored values it samples, and from which distributions: a
    # scratch study with the stored values enqueued answers each suggest with the stored value.
    scratch = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    scratch.enqueue_trial(trial.params)
    probe = scratch.ask()
    space_fn(probe)
    return dict(probe.params), dict(probe.distributions), None


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float) and not isinstance(a, bool):
        return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
    return a == b or str(a) == str(b)


def _running_best(values: list[float | None], maximize: bool) -> dict[int, float]:
    """Per-epoch running best (what Ray reported to Optuna as the trial's intermediate value)."""
    out: dict[int, float] = {}
    best: float | None = None
    for step, value in enumerate(values, 1):
        if value is None or not math.isfinite(value):
            continue
        best = value if best is None else (max(best, value) if maximize else min(best, value))
        out[step] = best
    return out


@dataclass(frozen=True)
class _PastTrial:
    """Stands in for a Ray trial of an earlier session in a scheduler's bookkeeping."""

    trial_id: str


def prime_scheduler(scheduler: Any, plan: ResumePlan) -> None:
    """Feed an ASHA/Hyperband or median-rule scheduler the ended trials' per-epoch metric values.

    ASHA: each epoch's value goes through the bracket's own ``on_result``, so its rungs hold the values
    they recorded before (Hyperband: the bracket a trial was in is not stored; a stable choice by run id
    stands in). Median rule: the trials join the results it takes running means over.
    """
    from ray.tune.schedulers import AsyncHyperBandScheduler, MedianStoppingRule

    for trial in plan.ended:
        curve = trial.history.get(plan.metric, [])
        past = _PastTrial(f"stored-{trial.run_id}")
        if isinstance(scheduler, AsyncHyperBandScheduler):
            brackets = scheduler._brackets
            bracket = brackets[int(trial.run_id[:8], 16) % len(brackets)] if len(brackets) > 1 else brackets[0]
            sign = float(scheduler._metric_op or 1.0)  # -1 for "min": ASHA keeps larger-is-better values
            for epoch, value in enumerate(curve, 1):
                if value is not None:  # the bracket reads only .trial_id of the trial it is given
                    bracket.on_result(past, epoch, sign * value)  # type: ignore[arg-type]
        elif isinstance(scheduler, MedianStoppingRule):
            results = [{scheduler._time_attr: e, scheduler._metric: v} for e, v in enumerate(curve, 1) if v is not None]
            if results:  # the rule compares a trial with every other trial's results so far
                scheduler._results[past] = results


# -- reopening -----------------------------------------------------------------------------------------
def reopen(client: Any, plan: ResumePlan, tags: Mapping[str, str]) -> SweepLogger:
    """Reopen the plan's parent run (RUNNING, state running) and close the runs its dead driver left open.

    A trial left RUNNING is closed KILLED with ``hpo.stopped_by: crash``; it is run again under its number
    and gets ``hpo.replaced_by`` when its re-run starts (``hpo.callbacks.TrialTracker``).
    """
    from tracker.mlflow_log import SweepLogger

    logger = SweepLogger.reopen(
        client, experiment_id=plan.experiment_id, parent_run_id=plan.parent_run_id,
        tags={**tags, schema.RESUMES: str(plan.resumes + 1)},
    )
    crash = {schema.STOPPED_BY: schema.STOPPED_BY_CRASH, schema.ERROR: "the sweep's driver died while it ran"}
    for trial in [*plan.rerun, *plan.stale]:
        if trial.status == "RUNNING":
            logger.close_stale_trial(trial.run_id, crash)
        elif trial in plan.rerun and schema.STOPPED_BY not in trial.tags:  # closed by Ctrl-C: same story
            logger.set_tags(trial.run_id, {schema.STOPPED_BY: schema.STOPPED_BY_CRASH})
    return logger
