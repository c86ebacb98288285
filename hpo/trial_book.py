"""The one piece of state a running sweep shares: which trials were stopped early, and each one's number.

The searcher numbers trials in the order it proposed them, the scheduler marks the ones it stops
before their last epoch, and the driver's tracker reads both. The runner makes one
:class:`TrialBook` and hands it to each of them; under Ray Client, where searcher and scheduler run on
the head, they get a ``hpo.relay.RelayedTrialBook`` that also posts each entry to the driver.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass
class TrialBook:
    """Trial id -> proposal number, and the ids of trials stopped early. Plain data: it pickles.

    On a resumed sweep (``hpo.resume``) it also knows the numbers the store already holds (``taken``),
    the configurations to run again in place of trials a dead driver left (``requeued``: their
    ``params_key`` -> the number they keep), the run each re-run replaces (``replaces``) and how many
    epochs the runs it replaces hold in the store (``logged_epochs``: the re-run does not log them again).
    """

    numbers: dict[str, int] = field(default_factory=dict)
    stopped: set[str] = field(default_factory=set)
    timed_out: dict[str, str] = field(default_factory=dict)  # trial id -> why a timeout ended it (hpo.timeouts)
    taken: set[int] = field(default_factory=set)
    requeued: dict[tuple[tuple[str, str], ...], int] = field(default_factory=dict)
    replaces: dict[int, str] = field(default_factory=dict)
    logged_epochs: dict[int, int] = field(default_factory=dict)  # re-run's number -> epochs its killed runs logged

    def assign(self, trial_id: str, proposed: int, params: Mapping[str, Any]) -> int:
        """Number a newly proposed trial and remember it; returns the number.

        A configuration queued to replace a killed trial gets that trial's number; any other keeps its
        proposal number unless the store already has it, else takes the lowest free one (dense numbers).
        """
        number = self.requeued.pop(params_key(params), None)
        if number is None:
            used = self.taken | set(self.requeued.values()) | set(self.numbers.values())
            number = proposed
            if number in used:
                number = next(n for n in range(len(used) + 1) if n not in used)
        self.set_number(trial_id, number)
        return self.numbers[trial_id]

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


def params_key(params: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    """A configuration as a hashable key (``repr`` keeps floats exact)."""
    return tuple(sorted((str(k), repr(v)) for k, v in params.items()))
