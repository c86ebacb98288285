"""``hpo confirm NAME|RUN_ID``: the seed confirmation (``hpo.confirm``) of a sweep that already ran.

The sweep's stored config (``resolved_config.json``) gives the trainable, resources and timeouts; the
stored trials give the top configurations. The sweep run is reopened for the confirm runs and the summary,
then closed with the status it had; ``hpo.best_run_id`` and ``best_checkpoint`` move to the confirmed
winner. Confirm runs a previous ``hpo confirm`` (or the sweep itself) finished for the same seeds are kept.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, TextIO

from hpo import defaults
from hpo.checkpoints import kept_checkpoint
from hpo.config import Confirm
from hpo.confirm import Confirmation, confirm_search
from hpo.errors import ConfigError, HpoError, tracking_errors
from hpo.results import SweepResult, fixed_settings
from tracker import schema

SOURCE = "hpo confirm"


def confirm_stored(
    target: str, tracking_uri: str | None, top: int | None, seeds: int | None, stream: TextIO | None = None
) -> SweepResult:
    """Confirm the top trials of the stored sweep ``target`` (a name or parent run id).

    Raises:
        ConfigError: no such sweep, a multi-objective sweep, a sweep a live driver holds or whose driver died
            mid-search (resume it first), or bad ``top``/``seeds``.
        TrackingError: the store cannot be read.
        HpoError: the sweep has no scored trial to confirm.
    """
    from hpo.lease import Lease, check_remote_driver
    from hpo.resume import find_sweep_run, stored_sweep, stored_trials
    from hpo.sync import sync_leftovers
    from tracker.mlflow_log import open_client

    stream = stream or sys.stderr
    _settings(None, top, seeds)  # bad numbers are refused before the store is opened
    uri = defaults.tracking_uri(tracking_uri)
    with tracking_errors():
        client = open_client(uri)
        run = find_sweep_run(client, target, SOURCE)
        config, _ = stored_sweep(client, run, {"tracking_uri": json.dumps(uri)})
    if config.multi_objective:
        raise ConfigError(f"sweep {config.name} has {len(config.objectives)} objectives: a Pareto front has no "
                          "single winner to confirm", source=SOURCE)
    chosen = _settings(config.confirm, top, seeds)
    tags = dict(run.data.tags)
    if tags.get(schema.SWEEP_STATE) == "running":
        check_remote_driver(tags, "running", config.name)
    with Lease(config.experiment_name, config.name):  # refuses while a driver here runs this sweep
        if tags.get(schema.SWEEP_STATE) == "running":  # no live driver holds it: its driver died mid-search
            raise ConfigError(f"sweep {config.name} (run {run.info.run_id}) did not finish: its driver died during "
                              f"the search. Resume it first (`hpo resume {config.name}`), then confirm",
                              source=SOURCE)
        sync_leftovers(config.name, uri, client, stream)
        with tracking_errors():
            trials = stored_trials(client, run.info.experiment_id, run.info.run_id)
        metric = config.metric.name
        records = [t.record(metric) for t in trials if t.ended]
        if not any(r.best is not None and r.status != "FAILED" for r in records):
            raise HpoError(f"sweep {config.name} has no trial with a value of {metric} to confirm")
        print(f"confirming sweep {config.name} (run {run.info.run_id}): top {chosen.top} configurations x "
              f"{chosen.seeds} fresh seeds", file=stream, flush=True)
        confirmation = _run(config, client, run, records, chosen, stream)
    best = confirmation.winner
    return SweepResult(config.name, run.info.run_id, run.info.experiment_id, uri, metric, config.metric.goal,
                       sorted(records, key=lambda r: r.number), best, confirmation=confirmation.doc)


def _settings(stored: Confirm | None, top: int | None, seeds: int | None) -> Confirm:
    """``--top`` / ``--seeds`` over the sweep file's ``confirm:`` over the defaults, validated alike."""
    base = stored or Confirm()
    values = {"top": base.top if top is None else top, "seeds": base.seeds if seeds is None else seeds}
    try:
        return Confirm.model_validate(values)
    except ValueError as e:
        detail = e.errors(include_url=False)[0]  # type: ignore[attr-defined]
        field = str(detail["loc"][0])
        raise ConfigError(f"--{field} {values[field]}: {detail['msg'].lower()}", source=SOURCE) from None


def _run(config: Any, client: Any, run: Any, records: list[Any], chosen: Confirm, stream: TextIO) -> Confirmation:
    """With the sweep run reopened: confirm (Ray starts only when a run is missing), move the best to the
    winner, close the run with the status it had."""
    from hpo.provenance import provenance_tags
    from hpo.ray_session import RaySession
    from hpo.runner import _diagnose_on_finish, _sweep_tags
    from hpo.startup import PhaseClock
    from hpo.tuning import fit_fixed, trial_threads
    from tracker.mlflow_log import SweepLogger

    ray_session = RaySession(config, PhaseClock())  # started by the first pass only: a full stored one needs none

    def fit(tracker: Any, configs: list[dict[str, Any]]) -> None:
        fit_fixed(config, ray_session.start(), stream, tracker, configs)

    logger = None
    try:
        with tracking_errors():
            logger = SweepLogger.reopen(client, experiment_id=run.info.experiment_id,
                                        parent_run_id=run.info.run_id, tags={})
        confirmation = confirm_search(
            config, logger, records, fit=fit,
            tracker_args={"base_tags": {**_sweep_tags(config), **provenance_tags(Path.cwd()),
                                        schema.THREADS: str(trial_threads(config))},
                          "fixed": fixed_settings(config), "on_finish": _diagnose_on_finish(config)},
            top=chosen.top, seeds=chosen.seeds, resumed=True,
        )
        tags: dict[str, str] = {}
        winner = confirmation.winner
        if winner is not None:
            tags = {schema.BEST_RUN_ID: winner.run_id, schema.BEST_TRIAL_ID: winner.trial_id}
            if winner.run_id != run.data.tags.get(schema.BEST_RUN_ID):
                _move_checkpoint(logger, config.name, winner, stream)
        logger.finish_sweep(run.info.status if run.info.status != "RUNNING" else "FINISHED", tags, {})
        return confirmation
    except BaseException:
        if logger is not None:  # interrupted: the run goes back to what it was; finished confirm runs stay
            logger.finish_sweep(run.info.status if run.info.status != "RUNNING" else "KILLED", {}, {})
        raise
    finally:
        ray_session.close()


def _move_checkpoint(logger: Any, sweep: str, winner: Any, stream: TextIO) -> None:
    """Copy the winner's best-epoch checkpoint from Ray's storage onto the sweep run's ``best_checkpoint``."""
    folder = kept_checkpoint(sweep, winner.trial_id)
    if folder is None:
        print(f"warning: the checkpoint of trial {winner.number} is no longer in Ray's storage "
              f"({defaults.ray_storage()}); the sweep's {schema.BEST_CHECKPOINT_DIR} still holds the search's best",
              file=stream)
        return
    logger.log_artifacts(logger.parent_run_id, folder, schema.BEST_CHECKPOINT_DIR)
