"""Run a validated sweep: the only caller of ``tune.Tuner``.

Order matters for "nothing is lost": the store is open (a new SQLite store created) and Ray is up
before the parent run exists, the parent run exists before the first trial, and every trial's run is
closed FINISHED, FAILED or KILLED whatever happens to the sweep. The store opens on a thread while Ray
starts on the main thread (``hpo.startup``): the two longest start-up phases overlap.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hpo import defaults, rules, sampler_choice
from hpo.checkpoints import kept_checkpoint
from hpo.cluster import check_cluster_fits
from hpo.compress import compress_after_search
from hpo.config import SweepConfig, flatten
from hpo.confirm import confirm_search, stored_confirmation
from hpo.errors import TrackingError, tracking_errors
from hpo.front_log import log_front
from hpo.holdout import score_winner
from hpo.objectives import objectives_tag
from hpo.provenance import provenance_tags
from hpo.ray_session import RaySession
from hpo.results import SweepResult, TrialRecord, best_trial, fixed_settings, leaderboard
from hpo.startup import PhaseClock, StoreOpening
from hpo.sync import after_sweep, journal_error, sync_leftovers
from hpo.trial_book import TrialBook
from hpo.tuning import fit_fixed, fit_search, trial_threads
from tracker import schema
from tracker.liveness import stored_sweep_state
from tracker.mlflow_log import SweepLogger, open_client, sqlite_path
from tracker.uri import is_server_uri, probe_server

if TYPE_CHECKING:  # Ray Tune's import (~1 s) runs on the store's thread while Ray starts: see _open_store
    from hpo.callbacks import TrialTracker
    from hpo.resume import ResumePlan

log = logging.getLogger(__name__)


def run_sweep(
    config: SweepConfig,
    sweep_text: str,
    *,
    progress_stream: Any = None,
    on_finish: Callable[[TrialRecord], dict[str, str]] | None = None,
    new: bool = False,
    resume_run_id: str | None = None,
    sweep_dir: str | None = None,
    clock: PhaseClock | None = None,
) -> SweepResult:
    """Run every trial of ``config`` through Ray Tune, tracked in MLflow.

    A sweep of this name that did not finish is resumed (``hpo.resume``) unless ``new``; one live
    driver per sweep (``hpo.lease``).

    Args:
        config: the validated sweep.
        sweep_text: the sweep file as given (stored on the parent run).
        progress_stream: where live progress goes (stderr by default).
        on_finish: extra tags for a trial when it ends (the diagnosis).
        new: start a fresh sweep even when one of this name did not finish.
        resume_run_id: resume this parent run (``hpo resume RUN_ID``) rather than the latest of the name.
        sweep_dir: the sweep file's folder: the git commit of its work tree is recorded on every trial
            (the current folder's when None, as for ``hpo resume``).
        clock: marks the start-up phases (``hpo run --verbose`` prints them).

    Returns:
        The stored sweep and its trials, best first is not implied: see ``leaderboard``.

    Raises:
        ClusterError: ``ray.address`` names a cluster that does not answer (before anything is created).
        TrackingError: the store cannot be reached (before any run exists; a Ray started meanwhile is shut down).
        ConfigError: one trial needs more than the cluster has (before any run exists).
        HpoError: Ray could not run the sweep.
    """
    started = time.monotonic()
    from hpo.cluster import check_ray_address

    check_ray_address(config.ray.address)
    if config.ray.address is None:  # a new local Ray gets this machine's cores: refuse a misfit before any file
        cores = float(os.cpu_count() or 1)
        gpus = config.workers * config.resources.gpu  # GPUs are checked once Ray has detected them
        check_cluster_fits(config, {"CPU": cores, "GPU": gpus}, [{"CPU": cores, "GPU": gpus}])
    clock = clock or PhaseClock()
    uri = defaults.tracking_uri(config.tracking_uri)
    trials = rules.trials_planned(config)
    if is_server_uri(uri):  # a server that does not answer is refused at once: no lock file, no Ray start
        with tracking_errors():
            probe_server(uri)
    from hpo.lease import Lease
    from hpo.resume import plan_resume

    with Lease(config.experiment_name, config.name):  # refuses while another driver here runs this sweep
        # a finished sweep run again usually has nothing to do: then its plan comes first, and Ray only if needed
        plan_first = resume_run_id is not None or (not new and _stored_state(uri, config.name) == "finished")
        opening = StoreOpening(lambda: _open_store(uri, clock))
        session = RaySession(config, clock)
        stream = progress_stream or sys.stderr
        try:
            if not plan_first:
                session.start()  # while the store opens on its thread
            client = opening.result()  # a store that does not answer: Ray is shut down below, no run exists
            sync_leftovers(config.name, uri, client, stream)  # an earlier driver's journal first
            with tracking_errors():
                plan = None if new else plan_resume(client, config, run_id=resume_run_id)
            if plan is not None:
                with tracking_errors():
                    confirmed = stored_confirmation(client, plan.parent_run_id)
                confirm_now = plan.nothing_to_do and config.confirm is not None and confirmed is None
                print(f"sweep {config.name}: its search is done; confirming its top trials" if confirm_now
                      else plan.message(), file=stream, flush=True)
                if plan.nothing_to_do and not confirm_now:
                    if config.compress is not None:  # the block runs once, after a search: not on every rerun
                        print(f"compress: not run again on a finished sweep; `hpo compress {config.name}` makes "
                              "(more) variants of its winner", file=stream, flush=True)
                    return _stored_result(plan, config, client, uri, started, stream, confirmed)
            result = _run_started(config, sweep_text, client, uri, trials, session.start(), started, progress_stream,
                                  on_finish, plan, sweep_dir, clock)
        except Exception as e:
            if (unwritable := journal_error(e)) is not None:  # e.g. a full disk under $HPO_HOME: say so, no traceback
                raise TrackingError(str(unwritable)) from None
            raise
        finally:
            opening.wait()  # an error path must not end the process in the middle of creating the store
            session.close()

        # the search's results are final and stored: the sweep file's compress: block runs on them (no Ray)
        result.compression = compress_after_search(config, result, stream)
        return result

def _stored_state(uri: str, sweep: str) -> str | None:
    """The latest sweep of this name's state in a SQLite store (stdlib only); None elsewhere or when absent."""
    db = sqlite_path(uri)
    return None if db is None else stored_sweep_state(db, sweep)


def _open_store(uri: str, clock: PhaseClock) -> Any:
    """On the store's thread while Ray starts: open the store, then import what the driver needs once Ray
    is up (Ray Tune, Optuna, the callbacks), so those imports overlap Ray's start too."""
    with tracking_errors():
        client = open_client(uri)
    clock.mark("store open")
    import hpo.callbacks  # noqa: F401 - imports ray.tune
    import hpo.search  # noqa: F401 - imports optuna

    clock.mark("tune and optuna imported")
    return client


def _stored_result(
    plan: ResumePlan, config: SweepConfig, client: Any, uri: str, started: float, stream: Any,
    confirmation: dict[str, Any] | None = None,
) -> SweepResult:
    """A sweep with nothing left to run, as the store holds it.

    A dead driver's sweep whose time budget is spent is closed here rather than left running: its parent
    reopened, the trials it left RUNNING closed KILLED (``hpo.stopped_by: crash``), and the sweep finished
    (``finished`` when no trial was cut short, else ``interrupted``), all through the journaled logger.
    """
    records = sorted(plan.records().values(), key=lambda r: r.number)
    best = best_trial(records, plan.goal, plan.objectives)
    if confirmation is not None:  # the confirmed winner, as the sweep run names it
        best = next((r for r in records if r.run_id == confirmation["winner"]), best)
    if plan.left_open:
        from hpo.resume import reopen

        logger = reopen(client, plan, {})
        cut = bool(plan.rerun)  # a trial in flight when the driver died will not run again: the time is spent
        _finish_parent(logger, config, records, best, "KILLED" if cut else "FINISHED", cut, plan.elapsed_s,
                       _best_params_logged(client, plan.parent_run_id))
        after_sweep(logger, records, stream)
    return SweepResult(plan.sweep, plan.parent_run_id, plan.experiment_id, uri, plan.metric, plan.goal, records,
                       best, False, time.monotonic() - started, objectives=plan.objectives, confirmation=confirmation)


def _best_params_logged(client: Any, parent_run_id: str) -> bool:
    """Whether the sweep's ``best.<param>`` params exist (MLflow params cannot change: written once)."""
    return any(k.startswith(schema.BEST_PARAM_PREFIX) for k in client.get_run(parent_run_id).data.params)


def _run_started(
    config: SweepConfig,
    sweep_text: str,
    client: Any,
    uri: str,
    trials: int,
    cluster_cpus: float,
    started: float,
    progress_stream: Any,
    on_finish: Callable[[TrialRecord], dict[str, str]] | None,
    plan: ResumePlan | None = None,
    sweep_dir: str | None = None,
    clock: PhaseClock | None = None,
) -> SweepResult:
    """With Ray up: open (or reopen) the parent run, tune, and close every run whatever happens."""
    sweep_tags = {**_sweep_tags(config), schema.SWEEP_STATE: "running", schema.TRIALS_TOTAL: str(trials)}
    if plan is None:
        logger = SweepLogger.start(
            client,
            experiment=config.experiment_name,
            run_name=config.name,
            tags=sweep_tags,
            params=flatten(_stored_config(config, exclude_none=True)),
            artifact_location=_artifact_location(uri, config.experiment_name),
        )
    else:
        from hpo.resume import reopen

        logger = reopen(client, plan, sweep_tags)
    # MLflow params cannot change: best.<param> is written once, when the sweep first ends. Asked now,
    # while the store answers: at the end it may be down, and the journal must carry the close alone.
    best_logged = plan is not None and _best_params_logged(client, logger.parent_run_id)
    # written again on resume: a raised budget is what the next resume compares against
    logger.log_text(logger.parent_run_id, sweep_text, schema.SWEEP_FILE_ARTIFACT)
    logger.log_json(logger.parent_run_id, _stored_config(config), schema.RESOLVED_CONFIG_ARTIFACT)
    from hpo.lease import Heartbeat

    elapsed_before = plan.elapsed_s if plan is not None else 0.0
    heartbeat = Heartbeat(client, logger.parent_run_id, lambda: elapsed_before + time.monotonic() - started).start()
    try:
        clock = clock or PhaseClock()
        clock.mark("sweep run created")
        return _track(config, logger, uri, trials, cluster_cpus, started, progress_stream, on_finish, plan,
                      best_logged, sweep_dir, clock)
    finally:
        heartbeat.stop()


def _track(
    config: SweepConfig,
    logger: SweepLogger,
    uri: str,
    trials: int,
    cluster_cpus: float,
    started: float,
    progress_stream: Any,
    on_finish: Callable[[TrialRecord], dict[str, str]] | None,
    plan: ResumePlan | None,
    best_logged: bool = False,
    sweep_dir: str | None = None,
    clock: PhaseClock | None = None,
) -> SweepResult:
    from hpo.callbacks import Progress, TrialTracker

    book = TrialBook()  # written by the searcher and the scheduler, read by the tracker
    tracker = TrialTracker(
        logger,
        base_tags={**_sweep_tags(config), **provenance_tags(Path(sweep_dir) if sweep_dir else Path.cwd()),
                   schema.THREADS: str(trial_threads(config))},
        fixed=fixed_settings(config),
        metric=config.metric.name,
        book=book,
        stopped_by=config.early_stop.type,
        time_limit_s=plan.time_left_s if plan is not None else config.budget.time_limit_s,
        on_finish=on_finish or _diagnose_on_finish(config),
    )
    if plan is not None:  # the trials that ended before count, and keep their numbers
        tracker.records.update(plan.records())
        plan.fill_book(book)  # here only: Relay copies it to the head's book; the searcher adds `requeued`
    progress = Progress(tracker, trials, config.metric.goal, config.metric.name, progress_stream)
    interrupted = False
    status = "FAILED"
    confirmation = None
    try:
        if plan is None or (plan.to_start > 0 and (plan.time_left_s is None or plan.time_left_s > 0)):
            fit_search(config, trials, tracker, progress, cluster_cpus, plan, clock or PhaseClock())
        tracker.close_open(finished=True)
        if config.confirm is not None:
            confirmation = confirm_search(
                config, logger, list(tracker.records.values()),
                fit=lambda t, configs: fit_fixed(config, cluster_cpus, progress_stream, t, configs),
                tracker_args=_confirm_tracker_args(tracker), top=config.confirm.top, seeds=config.confirm.seeds,
                resumed=plan is not None,
            )
        status = "FINISHED"
    except KeyboardInterrupt:
        interrupted, status = True, "KILLED"
    finally:
        tracker.close_open(finished=status == "FINISHED")
        records = sorted(tracker.records.values(), key=lambda r: r.number)
        objectives = [(m.name, str(m.goal)) for m in config.objectives]
        best = best_trial(records, config.metric.goal, objectives)  # several objectives: the front's best on the first
        if confirmation is not None and confirmation.winner is not None:  # the best mean over fresh seeds
            best = confirmation.winner
        if best is not None and best.checkpoint is None:  # it ran before a resume: Ray's storage may keep it
            best.checkpoint = _kept_checkpoint(config.name, best.trial_id)
        try:  # after the search, and only then: the winner's checkpoint on the test split, once
            test_note = score_winner(config, logger, best, searched=status == "FINISHED",
                                     stream=progress_stream or sys.stderr)
        except KeyboardInterrupt:
            interrupted, status, test_note = True, "KILLED", "interrupted while scoring the winner: no test estimate"
        elapsed = (plan.elapsed_s if plan is not None else 0.0) + time.monotonic() - started
        _finish_parent(logger, config, records, best, status, interrupted, elapsed, best_logged)
        after_sweep(logger, records, progress_stream or sys.stderr)
    return SweepResult(
        config.name, logger.parent_run_id, logger.experiment_id, uri, config.metric.name, config.metric.goal,
        records, best, interrupted, time.monotonic() - started, objectives=objectives, test_note=test_note,
        task=config.trainer.task, confirmation=confirmation.doc if confirmation is not None else None,
    )


def _confirm_tracker_args(tracker: TrialTracker) -> dict[str, Any]:
    """What a confirmation pass's tracker shares with the search's: tags, fixed settings, the diagnosis."""
    return {"base_tags": tracker.base_tags, "fixed": tracker.fixed, "on_finish": tracker.on_finish}


def _stored_config(config: SweepConfig, *, exclude_none: bool = False) -> dict[str, Any]:
    """The resolved config as the store keeps it (params, ``resolved_config.json``): without
    ``tracking_uri``, which may carry a password (``$MLFLOW_TRACKING_URI`` of a team's PostgreSQL) and
    names the store the run already lives in."""
    return config.model_dump(mode="json", exclude_none=exclude_none, exclude={"tracking_uri"})




def _diagnose_on_finish(config: SweepConfig) -> Callable[[TrialRecord], dict[str, str]]:
    """Diagnose each trial as it ends; its verdict becomes tags (the JSON goes beside it as an artifact)."""
    from hpo.diagnose import diagnose_record, trial_tags
    from trainers.tasks import TASKS

    n_classes = TASKS[config.trainer.task].n_classes if config.trainer.task else None

    def on_finish(record: TrialRecord) -> dict[str, str]:
        try:
            record.diagnosis = diagnose_record(record, n_classes, config.trainer.task)
        except Exception:  # noqa: BLE001 - a diagnosis bug must not lose the trial's own results
            log.exception("diagnosis of trial %s failed", record.number)
            return {}
        return trial_tags(record.diagnosis) if record.diagnosis is not None else {}

    return on_finish


def _finish_parent(
    logger: SweepLogger,
    config: SweepConfig,
    records: list[TrialRecord],
    best: TrialRecord | None,
    status: str,
    interrupted: bool,
    elapsed_s: float = 0.0,
    best_logged: bool = False,
) -> None:
    """Close the parent run with the sweep's state, counts and best trial. Nothing here reads the store
    (it may be down: the journal carries every write), and the run is closed whatever an extra fails."""
    state = "interrupted" if interrupted else ("finished" if status == "FINISHED" else "failed")
    tags = {schema.SWEEP_STATE: state, schema.ELAPSED_S: f"{elapsed_s:.1f}"}
    metrics: dict[str, float] = {
        "trials_finished": float(sum(r.status == "FINISHED" for r in records)),
        "trials_failed": float(sum(r.status == "FAILED" for r in records)),
        "trials_stopped": float(sum(r.early_stopped for r in records)),
    }
    try:
        _log_sweep_diagnosis(logger, records, tags)
        metrics.update(log_front(logger, records, [(m.name, m.goal) for m in config.objectives]))
        if best is not None and best.best is not None:
            tags[schema.BEST_RUN_ID] = best.run_id
            tags[schema.BEST_TRIAL_ID] = best.trial_id
            metrics[schema.BEST_PREFIX + config.metric.name] = best.best
            if not best_logged:  # after a resume that found a better trial, hpo.best_run_id alone names it
                logger.log_params(logger.parent_run_id,
                                  {schema.BEST_PARAM_PREFIX + k: v for k, v in best.config.items()})
            _log_checkpoint(logger, best)
    finally:
        logger.finish_sweep(status, tags, metrics)


def _log_sweep_diagnosis(logger: SweepLogger, records: list[TrialRecord], tags: dict[str, str]) -> None:
    from hpo.diagnose import summary_line, sweep_summary

    try:
        summary = sweep_summary(records)
    except Exception:  # noqa: BLE001 - the summary is advice; the sweep's results matter more
        log.exception("sweep diagnosis summary failed")
        return
    if summary is not None:
        tags[schema.DIAGNOSIS_SUMMARY] = summary_line(summary)
        logger.log_json(logger.parent_run_id, summary.to_dict(), schema.DIAGNOSIS_SUMMARY_ARTIFACT)


def _kept_checkpoint(sweep: str, trial_id: str) -> Path | None:
    """This machine's Ray storage's checkpoint of a trial that ran before a resume (None under Ray Client:
    the cluster's storage is not here)."""
    from hpo.relay import client_connected

    return None if client_connected() else kept_checkpoint(sweep, trial_id)


def _log_checkpoint(logger: SweepLogger, best: TrialRecord) -> None:
    """Copy the best trial's best-epoch checkpoint from Ray's storage onto the parent run."""
    if best.checkpoint is None:
        return
    if not hasattr(best.checkpoint, "to_directory"):  # a folder of this machine's Ray storage (hpo.checkpoints)
        logger.log_artifacts(logger.parent_run_id, str(best.checkpoint), schema.BEST_CHECKPOINT_DIR)
        return
    from hpo.relay import client_connected, fetch_checkpoint

    with tempfile.TemporaryDirectory() as folder:
        # under Ray Client the checkpoint lies in the cluster's storage, not on this machine
        if client_connected():
            local = fetch_checkpoint(best.checkpoint, folder)
        else:
            local = best.checkpoint.to_directory(folder)
        logger.log_artifacts(logger.parent_run_id, local, schema.BEST_CHECKPOINT_DIR)


def _artifact_location(uri: str, experiment: str) -> str | None:
    """Artifacts of a database store go beside it (SQLite) or under ./.hpo/artifacts; a server decides its own."""
    if uri.startswith(("http://", "https://", "databricks")):
        return None
    db = sqlite_path(uri)
    root = db.parent / "artifacts" if db is not None else defaults.artifact_root()
    return (root / experiment).resolve().as_uri()


def _sweep_tags(config: SweepConfig) -> dict[str, str]:
    return {
        schema.SWEEP: config.name,
        schema.METHOD: config.method,
        **_sampler_tags(config),
        schema.METRIC: config.metric.name,
        schema.GOAL: config.metric.goal,
        schema.SEED: str(config.seed),
        schema.TASK: config.trainer.task or config.trainer.function or "",
        **({schema.OBJECTIVES: objectives_tag([(m.name, m.goal) for m in config.objectives])}
           if config.multi_objective else {}),
    }


def _sampler_tags(config: SweepConfig) -> dict[str, str]:
    """The sampler that runs (``sampler: auto`` resolved) and, for bayes, what was asked and why."""
    if config.method != "bayes":
        return {schema.SAMPLER: config.sampler_name}
    choice = sampler_choice.choose(config)
    return {schema.SAMPLER: choice.name, schema.SAMPLER_REQUESTED: choice.requested,
            schema.SAMPLER_REASON: choice.reason}




__all__ = ["SweepResult", "run_sweep", "best_trial", "leaderboard", "fixed_settings"]
