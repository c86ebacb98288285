"""Seed confirmation: re-run the search's top configurations with fresh seeds, and pick the winner by mean.

A search's best trial is one draw, picked on the split it is scored on: the luckiest seed of the best
configuration, or of a worse one. After the search (``confirm: {top: 3, seeds: 5}``, or ``hpo confirm``)
the ``top`` best trials' configurations are trained again, ``seeds`` times each, with seeds derived from
the sweep's seed (:func:`confirm_seeds`), as Ray trials of one more Tuner pass (``hpo.runner``: the same
trainable, resources, timeouts and retries; no early stopping), each a ``confirm`` child run of the sweep
tagged with the trial it confirms.

The winner is the configuration with the best MEAN validation value over its fresh seeds. The search's
own trial is left out of that mean: it was selected for being high, so counting it would pull each mean
towards the luck that put the configuration in the top-k (the winner's curse); the fresh runs are an
unbiased sample. Per configuration the summary (``confirmation.json`` on the sweep run) holds mean, std and
the 95% t-interval of the validation and test metric; Welch's t-test compares winner and runner-up.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpo.confirm_stats import Summary, summarize, verdict, welch
from hpo.results import TrialRecord, leaderboard
from tracker import schema

log = logging.getLogger(__name__)

SEED_BITS = 31  # seeds fit a signed 32-bit int (numpy, torch)


def confirm_seeds(sweep_seed: int, trial_number: int, count: int, taken: set[int] | None = None) -> list[int]:
    """``count`` distinct seeds for confirming trial ``trial_number`` of a sweep seeded ``sweep_seed``.

    Derived (SHA-256 of sweep seed, trial number, index), so a resumed confirmation or ``hpo confirm
    --seeds N`` with a larger N asks for the same first seeds again; none equals a seed in ``taken``.
    """
    taken = set(taken or ())
    seeds: list[int] = []
    index = 0
    while len(seeds) < count:
        digest = hashlib.sha256(f"hpo-confirm:{sweep_seed}:{trial_number}:{index}".encode()).digest()
        seed = int.from_bytes(digest[:8], "big") % (2**SEED_BITS)
        index += 1
        if seed not in taken:
            taken.add(seed)
            seeds.append(seed)
    return seeds


@dataclass
class Candidate:
    """One configuration to confirm: the search trial it comes from, its rank there, its fresh seeds."""

    origin: TrialRecord
    rank: int
    seeds: list[int]


def candidates(records: Sequence[TrialRecord], goal: str, top: int, seeds: int, sweep_seed: int) -> list[Candidate]:
    """The ``top`` scored trials of the search, best first, each with ``seeds`` fresh seeds (distinct overall)."""
    ordered = leaderboard(sorted(records, key=lambda r: r.number), goal)  # ties: the earlier trial first
    scored = [r for r in ordered if r.best is not None and r.status != "FAILED"][:top]
    taken = {sweep_seed, *(int(r.config["seed"]) for r in records if isinstance(r.config.get("seed"), int))}
    out = []
    for rank, record in enumerate(scored, 1):
        chosen = confirm_seeds(sweep_seed, record.number, seeds, taken)
        taken.update(chosen)
        out.append(Candidate(record, rank, chosen))
    return out


@dataclass
class ConfirmRun:
    """One confirmation run, fresh or kept from the store."""

    run_id: str
    confirms: str  # the run id of the search trial it re-runs
    seed: int
    status: str
    value: float | None  # the best validation value of the sweep metric over its epochs (its checkpoint's)
    test: dict[str, float] = field(default_factory=dict)  # test_<name> of its checkpoint, when a test split exists
    history: dict[str, list[float | None]] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict, repr=False)  # the trained configuration (fresh runs)
    checkpoint: Any = field(default=None, repr=False)  # its Ray checkpoint (fresh runs): scored on the test split

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "confirms": self.confirms, "seed": self.seed, "status": self.status,
                "metric": self.value, "test": dict(self.test)}


# -- the summary (pure) --------------------------------------------------------------------------------
def summary_doc(
    cands: Sequence[Candidate], runs: Sequence[ConfirmRun], metric: str, goal: str, test_metric: str | None
) -> dict[str, Any]:
    """``confirmation.json``: per configuration (search rank order) its runs and statistics, the winner by
    mean validation value, and Welch's test of the winner against the runner-up.

    ``test_metric``: ``test_<name>`` of the sweep metric when the task has a test split, else None (the
    document then says that no test estimate exists).
    """
    maximize = goal == "maximize"
    configs: list[dict[str, Any]] = []
    for cand in cands:
        mine = [r for r in runs if r.confirms == cand.origin.run_id and r.status == "FINISHED"]
        val = summarize([r.value for r in mine if r.value is not None])
        test = summarize([r.test[test_metric] for r in mine if test_metric and test_metric in r.test])
        configs.append({
            "run_id": cand.origin.run_id, "trial_number": cand.origin.number, "search_rank": cand.rank,
            "params": dict(cand.origin.config), "search_value": cand.origin.best, "seeds": list(cand.seeds),
            "runs": [r.run_id for r in mine], "failed_runs": sum(r.confirms == cand.origin.run_id
                                                                  and r.status != "FINISHED" for r in runs),
            "val": _stats(val), "test": _stats(test),
        })
    ranked = sorted(configs, key=lambda c: _mean_key(c, maximize))
    for rank, config in enumerate(ranked, 1):
        config["rank"] = rank if config["val"] is not None else None
    doc: dict[str, Any] = {
        "metric": metric, "goal": goal, "test_metric": test_metric, "seeds_per_config": max(
            (len(c.seeds) for c in cands), default=0),
        "selection": "mean validation value over the fresh seeds (the search's own trial left out: it was "
                     "selected for being high)",
        "configs": ranked, "runs": [r.to_dict() for r in runs],
        "winner": None, "runner_up": None, "welch": None, "verdict": "no configuration finished a confirmation run",
    }
    scored = [c for c in ranked if c["val"] is not None]
    if not scored:
        return doc
    doc["winner"] = scored[0]["run_id"]
    if len(scored) == 1:
        doc["verdict"] = f"trial {scored[0]['trial_number']} is the only configuration confirmed: nothing to compare"
        return doc
    first, second = scored[0], scored[1]
    doc["runner_up"] = second["run_id"]
    compared = welch(first["val"]["values"], second["val"]["values"])
    doc["welch"] = None if compared is None else compared.to_dict()
    doc["verdict"] = verdict(compared, f"trial {first['trial_number']}", f"trial {second['trial_number']}")
    return doc


def _stats(summary: Summary | None) -> dict[str, Any] | None:
    return None if summary is None else summary.to_dict()


def _mean_key(config: Mapping[str, Any], maximize: bool) -> tuple[int, float, int]:
    """Sort key: configurations with a mean first, best mean first, ties by search rank."""
    if config["val"] is None:
        return (1, 0.0, config["search_rank"])
    mean = float(config["val"]["mean"])
    return (0, -mean if maximize else mean, config["search_rank"])


# -- running it ------------------------------------------------------------------------------------------
@dataclass
class Confirmation:
    """What a confirmation leaves: the summary document, the winner's search trial, every confirm run."""

    doc: dict[str, Any]
    winner: TrialRecord | None
    runs: list[ConfirmRun]


Fit = Callable[[Any, list[dict[str, Any]]], None]  # (tracker, configurations) -> runs them (hpo.runner)


def confirm_search(
    config: Any,
    logger: Any,
    records: Sequence[TrialRecord],
    *,
    fit: Fit,
    tracker_args: Mapping[str, Any],
    top: int,
    seeds: int,
    resumed: bool,
) -> Confirmation:
    """Confirm the search's ``top`` configurations with ``seeds`` fresh seeds each; log the summary.

    Args:
        config: the sweep (``SweepConfig``).
        logger: the sweep's ``SweepLogger`` (its parent run is open).
        records: the search's trials.
        fit: runs one Tuner pass over fixed configurations with a given tracker.
        tracker_args: what the search's ``TrialTracker`` was built with (base tags, fixed settings, on_finish).
        top, seeds: how many configurations, how many fresh seeds each.
        resumed: the sweep ran before: confirm runs it finished are kept, ones its dead driver left open closed.
    """
    metric, goal = config.metric.name, config.metric.goal
    cands = candidates(records, goal, top, seeds, config.seed)
    kept = _kept_runs(logger, cands, metric) if resumed else {}
    todo = [(c, s) for c in cands for s in c.seeds if (c.origin.run_id, s) not in kept]
    fresh = _run_fresh(config, logger, todo, fit, tracker_args) if todo else []
    runs = [*kept.values(), *fresh]
    test_note = _score_test(config, logger, fresh)
    tested = {name for r in runs for name in r.test}
    test_metric = schema.test_metric(metric) if schema.test_metric(metric) in tested else None
    doc = summary_doc(cands, runs, metric, goal, test_metric)
    doc["test_note"] = None if test_metric else (test_note or "the confirm runs hold no test metric")
    _log_summary(logger, doc)
    winner = next((c.origin for c in cands if c.origin.run_id == doc["winner"]), None)
    return Confirmation(doc, winner, runs)


def stored_confirmation(client: Any, parent_run_id: str) -> dict[str, Any] | None:
    """The sweep run's ``confirmation.json`` once its confirmation finished (``hpo.confirm.state: done``), else None."""
    if client.get_run(parent_run_id).data.tags.get(schema.CONFIRM_STATE) != "done":
        return None
    with tempfile.TemporaryDirectory() as folder:
        path = client.download_artifacts(parent_run_id, schema.CONFIRM_ARTIFACT, folder)
        return json.loads(Path(path).read_text(encoding="utf-8"))  # type: ignore[no-any-return]


def _kept_runs(logger: Any, cands: Sequence[Candidate], metric: str) -> dict[tuple[str, int], ConfirmRun]:
    """Finished confirm runs a driver before this one left, by (trial confirmed, seed); the ones it left
    RUNNING are closed KILLED (stopped by ``crash``) and run again."""
    from hpo.resume import stored_trials

    planned = {(c.origin.run_id, s) for c in cands for s in c.seeds}
    kept: dict[tuple[str, int], ConfirmRun] = {}
    stored = stored_trials(logger.client, logger.experiment_id, logger.parent_run_id, kind=schema.KIND_CONFIRM)
    for run in stored:
        if run.status == "RUNNING":
            logger.close_stale_trial(run.run_id, {schema.STOPPED_BY: schema.STOPPED_BY_CRASH,
                                                  schema.ERROR: "the sweep's driver died while it ran"})
            continue
        seed = run.tags.get(schema.CONFIRM_SEED, "")
        key = (run.tags.get(schema.CONFIRMS, ""), int(seed) if seed.isdigit() else -1)
        if run.status == "FINISHED" and key in planned and key not in kept:
            kept[key] = ConfirmRun(
                run.run_id, key[0], key[1], run.status, run.metrics.get(schema.BEST_PREFIX + metric),
                {k: v for k, v in run.metrics.items() if k.startswith("test_")}, run.history,
            )
    return kept


def _run_fresh(
    config: Any, logger: Any, todo: Sequence[tuple[Candidate, int]], fit: Fit, tracker_args: Mapping[str, Any]
) -> list[ConfirmRun]:
    """One Tuner pass over the (configuration, seed) pairs; their runs as ``ConfirmRun`` in that order."""
    from hpo.callbacks import TrialTracker
    from hpo.trial_book import TrialBook

    extra = {i: {schema.CONFIRMS: c.origin.run_id, schema.CONFIRM_SEED: str(seed)} for i, (c, seed) in enumerate(todo)}
    tracker = TrialTracker(logger, metric=config.metric.name, book=TrialBook(), stopped_by="none",
                           kind=schema.KIND_CONFIRM, extra_tags=extra, **tracker_args)
    finished = False
    try:
        fit(tracker, [{**c.origin.config, "seed": seed} for c, seed in todo])
        finished = True
    finally:
        tracker.close_open(finished=finished)
    out = []
    for record in sorted(tracker.records.values(), key=lambda r: r.number):
        origin, seed = todo[record.number]
        out.append(ConfirmRun(logger.run_id(record.run_id), origin.origin.run_id, seed, record.status, record.best,
                              history=record.history, config=record.config, checkpoint=record.checkpoint))
    return out


def _score_test(config: Any, logger: Any, runs: Sequence[ConfirmRun]) -> str | None:
    """Score each fresh finished run's checkpoint on the test split once (``hpo.holdout``, one Ray task), in
    place; the metrics go onto each run. Returns why there is no test estimate, or None."""
    from hpo.holdout import NO_TEST_SPLIT, Holdout, no_estimate_reason, score_on_test

    reason = no_estimate_reason(config)
    ready = [r for r in runs if r.status == "FINISHED" and r.checkpoint is not None]
    if reason is not None or not ready:
        return reason
    try:
        scores = score_on_test(Holdout.of(config, logger), [(r.run_id, r.config, r.checkpoint) for r in ready])
    except Exception as e:  # noqa: BLE001 - the validation statistics stand without a test figure: say why
        log.exception("scoring the confirm runs on the test split failed")
        return f"scoring the confirm runs on the test split failed ({type(e).__name__}: {e}): no test estimate"
    for run in ready:
        run.test = {k: float(v) for k, v in scores.get(run.run_id, {}).items() if math.isfinite(float(v))}
    return None if any(run.test for run in ready) else NO_TEST_SPLIT


def _log_summary(logger: Any, doc: Mapping[str, Any]) -> None:
    """``confirmation.json``, the verdict tag and the winner's means on the sweep run."""
    logger.log_json(logger.parent_run_id, doc, schema.CONFIRM_ARTIFACT)
    logger.set_tags(logger.parent_run_id, {schema.CONFIRM_STATE: "done", schema.CONFIRM_VERDICT: doc["verdict"]})
    winner = next((c for c in doc["configs"] if c["run_id"] == doc["winner"]), None)
    metrics: dict[str, float] = {}
    if winner is not None:
        metrics[schema.CONFIRM_MEAN_PREFIX + doc["metric"]] = winner["val"]["mean"]
        if winner["test"] is not None and doc["test_metric"]:
            metrics[schema.CONFIRM_MEAN_PREFIX + doc["test_metric"]] = winner["test"]["mean"]
    if doc["welch"] is not None:
        metrics[schema.CONFIRM_P_VALUE] = doc["welch"]["p_value"]
    logger.log_metrics(logger.parent_run_id, metrics, step=0)
