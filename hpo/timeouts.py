"""A hung trial cannot hang the sweep: end trials that run too long or stop reporting.

Tune consults its schedulers and stoppers only when a trial reports, so a trial that never reports
again would hold its CPUs (and the sweep) forever. :class:`TrialTimeouts` is a Tune callback: at each
step of Tune's controller it checks every running trial's clock and, when one is overdue, notes why in
the sweep's :class:`~hpo.trial_book.TrialBook` and kills the trial's actor (``ray.kill``: a hung
process may never answer a polite stop). Tune then sees the actor die and ends the trial in error,
the searcher tells Optuna it failed, and the tracker records it FAILED with ``hpo.stopped_by:
timeout`` and the reason. A timeout is final: the trial is not retried under ``budget.max_failures``
(a retry of a trial that ran too long would run too long again).

Two limits:

- ``budget.trial_timeout_s``: a trial that runs longer than this from its start (its process, imports
  and data loading count) ends. The only limit on a trial that has not reported yet.
- ``budget.report_timeout_s``: a trial that has reported and then reports nothing for this long ends.
  When not set, the stall rule applies instead: a trial that has reported ends if it then reports
  nothing for ``STALL_FACTOR`` times its longest wait for a report so far (counted from its start), and
  at least ``STALL_FLOOR_S``. Why this default: a trial's own epochs take comparable time, so 10x its
  slowest one is a hang, not a slow epoch, whereas other trials say little (a wider model or a smaller
  batch can be 100x slower than the trials seen so far); the floor keeps short, noisy epochs (a busy
  machine, a checkpoint write) from ever looking hung. Before its first report nothing is known of a
  trial's pace, so only ``trial_timeout_s`` ends it: its start-up is not mistaken for a hang.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from ray.tune import Callback

from hpo.trial_book import TrialBook

log = logging.getLogger(__name__)

STALL_FACTOR = 10.0
STALL_FLOOR_S = 600.0
CHECK_INTERVAL_S = 0.5  # the controller steps many times a second; clocks need no finer look


@dataclass
class TrialClock:
    """When a trial started, when it last reported, and its longest wait for a report so far (seconds)."""

    started: float
    last_report: float
    longest_wait: float | None = None

    def reported(self, now: float) -> None:
        """A report came at ``now``."""
        wait = now - self.last_report
        self.longest_wait = wait if self.longest_wait is None else max(self.longest_wait, wait)
        self.last_report = now


def overdue(clock: TrialClock, now: float, trial_timeout_s: float | None, report_timeout_s: float | None) -> str | None:
    """Why a running trial must end at ``now``, or None while it may go on (pure: no Ray, no clock).

    Args:
        clock: the trial's start, last report and longest wait between reports.
        now: the time to judge at (the same clock as ``clock``'s times).
        trial_timeout_s: ``budget.trial_timeout_s``, or None.
        report_timeout_s: ``budget.report_timeout_s``, or None for the stall rule.

    Returns:
        A sentence naming the limit and the time, or None.
    """
    ran = now - clock.started
    if trial_timeout_s is not None and ran > trial_timeout_s:
        return f"the trial ran for {ran:.1f} s, longer than budget.trial_timeout_s = {trial_timeout_s:g} s"
    if clock.longest_wait is None:  # no report yet: start-up and a first epoch of unknown length
        return None
    silent = now - clock.last_report
    if report_timeout_s is not None:
        if silent > report_timeout_s:
            return (f"the trial reported nothing for {silent:.1f} s, longer than budget.report_timeout_s = "
                    f"{report_timeout_s:g} s")
    else:
        limit = max(STALL_FLOOR_S, STALL_FACTOR * clock.longest_wait)
        if silent > limit:
            return (f"the trial reported nothing for {silent:.0f} s, over {STALL_FACTOR:g}x its slowest report "
                    f"so far ({clock.longest_wait:.1f} s) and over {STALL_FLOOR_S:g} s: it looks hung; set "
                    "budget.report_timeout_s to choose the limit")
    return None


class TrialTimeouts(Callback):  # type: ignore[misc]
    """Ends running trials that are overdue (see the module's docstring); runs where Tune's controller runs.

    Args:
        book: the sweep's trial book: the reason a trial was ended goes there, for the tracker.
        trial_timeout_s: ``budget.trial_timeout_s``.
        report_timeout_s: ``budget.report_timeout_s`` (None: the stall rule).
    """

    def __init__(self, book: TrialBook, trial_timeout_s: float | None, report_timeout_s: float | None) -> None:
        self.book = book
        self.trial_timeout_s = trial_timeout_s
        self.report_timeout_s = report_timeout_s
        self.clocks: dict[str, TrialClock] = {}
        self._last_check = 0.0

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        now = time.monotonic()
        self.clocks[trial.trial_id] = TrialClock(now, now)

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        clock = self.clocks.get(trial.trial_id)
        if clock is not None:
            clock.reported(time.monotonic())

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.clocks.pop(trial.trial_id, None)

    on_trial_error = on_trial_complete

    def on_step_end(self, iteration: int, trials: list[Any], **info: Any) -> None:
        now = time.monotonic()
        if now - self._last_check < CHECK_INTERVAL_S:
            return
        self._last_check = now
        for trial in trials:
            clock = self.clocks.get(trial.trial_id)
            if clock is None or trial.status != "RUNNING":
                continue
            reason = overdue(clock, now, self.trial_timeout_s, self.report_timeout_s)
            if reason is not None:
                self._end(trial, reason)

    def _end(self, trial: Any, reason: str) -> None:
        import ray

        actor = trial.temporary_state.ray_actor  # Tune's handle on the trial's process (ray==2.60 pinned)
        if actor is None:
            return
        del self.clocks[trial.trial_id]
        log.warning("ending trial %s: %s", trial.trial_id, reason)
        self.book.mark_timed_out(trial.trial_id, reason)
        trial.max_failures = 0  # final: Tune must not retry it when it sees the actor die
        ray.kill(actor, no_restart=True)
