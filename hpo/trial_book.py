"""The one piece of state a running sweep shares: which trials were stopped early, and each one's number.

The searcher numbers trials in the order it proposed them, the scheduler marks the ones it stops
before their last epoch, and the driver's tracker reads both. The runner makes one
:class:`TrialBook` and hands it to each of them; under Ray Client, where searcher and scheduler run on
the head, they get a ``hpo.relay.RelayedTrialBook`` that also posts each entry to the driver.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class TrialBook:
    """Trial id -> proposal number, and the ids of trials stopped early. Plain data: it pickles."""

    numbers: dict[str, int] = field(default_factory=dict)
    stopped: set[str] = field(default_factory=set)
    timed_out: dict[str, str] = field(default_factory=dict)  # trial id -> why a timeout ended it (hpo.timeouts)

    def set_number(self, trial_id: str, number: int) -> None:
        """Remember ``trial_id``'s proposal number; the first one given stays (a retry keeps its number)."""
        self.numbers.setdefault(trial_id, number)

    def number_of(self, trial_id: str) -> int | None:
        """The proposal number of ``trial_id``, or None when the searcher has not numbered it."""
        return self.numbers.get(trial_id)

    def mark_stopped(self, trial_id: str) -> None:
        """``trial_id`` was stopped by the scheduler before its last epoch."""
        self.stopped.add(trial_id)

    def is_stopped(self, trial_id: str) -> bool:
        """Whether the scheduler stopped ``trial_id`` early."""
        return trial_id in self.stopped

    def mark_timed_out(self, trial_id: str, reason: str) -> None:
        """``trial_id`` was ended by a timeout, for ``reason`` (a sentence naming the limit)."""
        self.timed_out.setdefault(trial_id, reason)

    def timeout_of(self, trial_id: str) -> str | None:
        """Why a timeout ended ``trial_id``, or None when none did."""
        return self.timed_out.get(trial_id)
