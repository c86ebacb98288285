"""Driver-side Ray Tune callbacks: MLflow tracking of every trial, and live progress.

Both run in the driver process, so MLflow sees one writer and trials on other nodes need no store
credentials. Ray's own MLflowLoggerCallback logs every Tune field as a metric and does not nest runs
under a sweep; ``TrialTracker`` logs only what the trainer reported, nested, in batches.
"""

from __future__ import annotations

import math
import re
import sys
import time
from collections.abc import Callable, Mapping
from typing import Any, TextIO

from ray.tune import Callback

from hpo.checkpoints import SIGNALS_FILE, checkpoint_json
from hpo.results import TrialRecord
from hpo.trainable import trial_config
from hpo.trial_book import TrialBook
from hpo.trial_keys import BEST_KEY, DEVICE_KEY, NODE_KEY, RESUMED_KEY, TIME_KEY
from tracker import schema
from tracker.mlflow_log import SweepLogger

# Fields Ray adds to every result; they describe the run, not the model.
_RAY_FIELDS = frozenset({
    "timestamp", "checkpoint_dir_name", "done", "training_iteration", "trial_id", "date", "time_this_iter_s",
    "time_total_s", "pid", "hostname", "node_ip", "config", "time_since_restore", "iterations_since_restore",
    "experiment_tag", "should_checkpoint", "epoch", BEST_KEY, TIME_KEY, RESUMED_KEY,
})
_ERROR_LINES = 25
_ANSI_ESCAPE = re.compile(r"\x1b\[[0-9;]*m")


class _DriverOnly:
    """Ray pickles the run config, callbacks included, into tuner.pkl for resuming. These callbacks
    hold a live MLflow client (whose URI may carry a password) and a console stream: write a
    placeholder instead; a sweep is never resumed from that file."""

    def __reduce__(self) -> tuple[Any, tuple[()]]:
        return (Callback, ())


class TrialTracker(_DriverOnly, Callback):  # type: ignore[misc]
    """Mirrors each Tune trial into an MLflow child run of the sweep.

    Args:
        logger: the sweep's MLflow writer.
        base_tags: tags every trial run gets (sweep, method, sampler, seed, versions, git commit).
        fixed: settings every trial shares (trainer options, fixed parameters), logged as params.
        metric: the sweep metric's name.
        book: the sweep's trial numbers (from the searcher) and early stops (from the scheduler).
        stopped_by: name of the early-stopping rule for the tag.
        on_finish: called with each record when its trial ends (diagnosis hooks in here).
        time_limit_s: the sweep's time budget: trials it cuts short are KILLED, stopped by ``time_limit``.
        kind: the run kind of the runs it opens: ``trial`` (the search) or ``confirm`` (``hpo.confirm``).
        extra_tags: more tags per trial number (a confirmation run's ``hpo.confirms`` and seed).
    """

    def __init__(
        self,
        logger: SweepLogger,
        *,
        base_tags: Mapping[str, str],
        fixed: Mapping[str, Any],
        metric: str,
        book: TrialBook,
        stopped_by: str,
        on_finish: Callable[[TrialRecord], dict[str, str]] | None = None,
        time_limit_s: float | None = None,
        kind: schema.RunKind = schema.KIND_TRIAL,
        extra_tags: Mapping[int, Mapping[str, str]] | None = None,
    ) -> None:
        self.logger = logger
        self.base_tags = dict(base_tags)
        self.fixed = dict(fixed)
        self.metric = metric
        self.book = book
        self.stopped_by = stopped_by
        self.on_finish = on_finish
        # Tune stops every running trial when budget.time_limit_s runs out; they end short, not finished
        self.deadline = time.monotonic() + time_limit_s if time_limit_s else None
        self.records: dict[str, TrialRecord] = {}
        self.kind = kind
        self.extra_tags = dict(extra_tags or {})
        self._logged_before: dict[str, int] = {}  # trial id -> epochs the runs it replaces already logged

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        if trial.trial_id in self.records:  # a retried trial keeps its run; its new attempt starts over
            record = self.records[trial.trial_id]
            # the epochs the failed attempt logged stay on the run (the same seed retrains them the same on
            # CPU); its history is rebuilt from the new attempt's reports, so the curve has each epoch once
            self._logged_before[trial.trial_id] = max(self._logged_before.get(trial.trial_id, 0), record.epochs)
            record.history = {}
            return
        used = {r.number for r in self.records.values()}
        number = self.book.number_of(trial.trial_id)
        if number is None or number in used:
            number = max(used, default=-1) + 1
        config = trial_config(self.fixed, trial.config)
        sweep = self.base_tags.get(schema.SWEEP, "sweep")
        replaced = self.book.replaces.pop(number, None)  # a resumed sweep re-runs a killed trial's number
        run_id = self.logger.start_trial(
            f"{sweep}-{number:03d}" if self.kind == schema.KIND_TRIAL else f"{sweep}-{self.kind}-{number:03d}",
            config,
            {**self.base_tags, schema.TRIAL_ID: trial.trial_id, schema.TRIAL_NUMBER: str(number),
             **({schema.TRIAL_SEED: str(config["seed"])} if "seed" in config else {}),
             **({schema.REPLACES: replaced} if replaced else {}), **self.extra_tags.get(number, {})},
            kind=self.kind,
        )
        if replaced:
            self.logger.set_tags(replaced, {schema.REPLACED_BY: run_id})
            self._logged_before[trial.trial_id] = self.book.logged_epochs.pop(number, 0)
        self.records[trial.trial_id] = TrialRecord(trial.trial_id, number, run_id, config)

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        record = self.records.get(trial.trial_id)
        if record is None:
            return
        step = int(result.get("epoch") or result.get("training_iteration") or record.epochs + 1)
        if isinstance(result.get(NODE_KEY), str):  # the trainable sends it with its first report
            resumed = int(result.get(RESUMED_KEY) or 0)
            where = {schema.NODE_ID: result[NODE_KEY], schema.HOST: str(result.get("hostname") or ""),
                     schema.DEVICE: str(result.get(DEVICE_KEY) or ""),
                     schema.RESUMED_FROM_EPOCH: str(resumed) if resumed else ""}
            self.logger.set_tags(record.run_id, {k: v for k, v in where.items() if v})
        values = {
            k: float(v) for k, v in result.items()
            if k not in _RAY_FIELDS and not k.startswith(BEST_KEY)  # hpo_best.<objective>: what Optuna is told
            and isinstance(v, int | float) and not isinstance(v, bool)
        }
        for key, value in values.items():
            record.history.setdefault(key, []).append(value if math.isfinite(value) else None)
        finite = {k: v for k, v in values.items() if math.isfinite(v)}  # MLflow rejects NaN on some stores
        stamp_ms = int(float(result.get(TIME_KEY) or result.get("timestamp") or time.time()) * 1000)
        if step > self._logged_before.get(trial.trial_id, 0):  # a re-run's earlier epochs are on the killed run
            self.logger.log_epoch(record.run_id, finite, step=step, timestamp_ms=stamp_ms)
        record.epochs = step
        record.final = values.get(self.metric, record.final)
        best = result.get(BEST_KEY)
        record.best = float(best) if isinstance(best, int | float) else record.best

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        record = self.records.get(trial.trial_id)
        if record is None:
            return
        record.checkpoint = trial.checkpoint
        if self.book.is_stopped(trial.trial_id):
            record.status, record.early_stopped = "KILLED", True
            tags = {schema.EARLY_STOPPED: "true", schema.STOPPED_BY: self.stopped_by}
        else:
            record.status = "FINISHED"
            tags = {}
        self._finish(record, tags)

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        record = self.records.get(trial.trial_id)
        if record is None:
            return
        record.status = "FAILED"
        timeout = self.book.timeout_of(trial.trial_id)  # hpo.timeouts ended it: say which limit, not "actor died"
        record.error = timeout or _error_text(trial)
        tags = {schema.ERROR: record.error}
        if timeout:
            tags[schema.STOPPED_BY] = schema.STOPPED_BY_TIMEOUT
        self._finish(record, tags)

    def close_open(self, *, finished: bool = False) -> None:
        """Mark trials still running as KILLED: stopped by the time budget when Tune ``finished`` past it
        (Tune ends them without a completion event), else interrupted with the sweep."""
        timed_out = finished and self.deadline is not None and time.monotonic() >= self.deadline
        for record in self.records.values():
            if record.status != "RUNNING":
                continue
            record.status = "KILLED"
            if timed_out:
                record.early_stopped = True
                self._finish(record, {schema.EARLY_STOPPED: "true", schema.STOPPED_BY: schema.STOPPED_BY_TIME_LIMIT})
            else:
                self._finish(record, {schema.ERROR: "the sweep was interrupted"})

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        self.logger.maybe_flush()

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        self.logger.flush()

    def _finish(self, record: TrialRecord, tags: dict[str, str]) -> None:
        if self.on_finish is not None:
            tags.update(self.on_finish(record))
        if record.diagnosis is not None:
            self.logger.log_json(record.run_id, record.diagnosis.to_dict(), schema.DIAGNOSIS_ARTIFACT)
        layers = checkpoint_json(record.checkpoint, SIGNALS_FILE)
        if layers is not None:
            self.logger.log_json(record.run_id, layers, SIGNALS_FILE)
        metrics: dict[str, float] = {schema.EPOCHS_RUN: float(record.epochs)}
        if record.best is not None:
            metrics[schema.BEST_PREFIX + self.metric] = record.best
        if record.final is not None and math.isfinite(record.final):
            metrics[schema.FINAL_PREFIX + self.metric] = record.final
        self.logger.finish_trial(record.run_id, record.status, tags, metrics)


def _error_text(trial: Any) -> str:
    """The last lines of a failed trial's traceback, led by the exception line."""
    try:
        error = trial.get_error()
        text = str(error) if error is not None else ""
    except Exception:  # noqa: BLE001 - reading the error file must not hide the failure itself
        text = ""
    if not text and trial.error_file:
        try:
            with open(trial.error_file, encoding="utf-8") as f:
                text = f.read()
        except OSError:
            text = ""
    text = _ANSI_ESCAPE.sub("", text)  # Ray colours the actor name in its tracebacks
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return "\n".join(lines[-_ERROR_LINES:]) or "the trial failed without an error message"


class Progress(_DriverOnly, Callback):  # type: ignore[misc]
    """Live progress on stderr: trials done / running / total, best so far, elapsed, ETA.

    On a terminal one line is redrawn in place; otherwise a line is printed when a trial ends.
    """

    def __init__(
        self, tracker: TrialTracker, total: int, goal: str, metric: str, stream: TextIO | None = None,
        noun: str = "trials",
    ) -> None:
        self.tracker = tracker
        self.noun = noun  # what is counted: "trials", or "confirm runs" in a confirmation pass
        self.total = total
        self.maximize = goal == "maximize"
        self.metric = metric
        self.stream = stream or sys.stderr
        self.started = time.monotonic()
        self.interactive = self.stream.isatty()
        self._last_draw = 0.0
        self._last_line = ""
        # a resumed sweep starts with its earlier trials done: the ETA counts only this run's pace
        self.done_before = sum(r.status != "RUNNING" for r in tracker.records.values())

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        if self.interactive and time.monotonic() - self._last_draw > 0.5:
            self._draw(end="\r")

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self._draw(end="\n" if not self.interactive else "\r")

    on_trial_error = on_trial_complete

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        if self.interactive:
            self.stream.write("\n")
            self.stream.flush()

    def line(self) -> str:
        records = list(self.tracker.records.values())
        done = sum(r.status != "RUNNING" for r in records)
        running = len(records) - done
        failed = sum(r.status == "FAILED" for r in records)
        bests = [r.best for r in records if r.best is not None and r.status != "FAILED"]
        best = (max(bests) if self.maximize else min(bests)) if bests else None
        elapsed = time.monotonic() - self.started
        done_now = done - self.done_before
        eta = elapsed / done_now * (self.total - done) if done_now > 0 else None
        parts = [
            f"{self.noun} {done}/{self.total} done",
            f"{running} running",
            *([f"{failed} failed"] if failed else []),
            f"best {self.metric} {best:.4g}" if best is not None else f"best {self.metric} -",
            f"elapsed {_clock(elapsed)}",
            f"ETA {_clock(eta)}" if eta is not None else "ETA -",
        ]
        return " | ".join(parts)

    def _draw(self, end: str) -> None:
        text = self.line()
        if text == self._last_line and end == "\n":
            return
        self._last_line = text
        self._last_draw = time.monotonic()
        self.stream.write(("\r\033[K" if self.interactive else "") + text + end)
        self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600:d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}" if seconds >= 3600 else (
        f"{seconds // 60:02d}:{seconds % 60:02d}")
