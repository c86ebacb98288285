"""Tracking a sweep whose Tune controller runs on the cluster: Ray Client (``ray://HOST:PORT``).

Under Ray Client, ``tune.Tuner`` does not run in the driver: it pickles itself into an actor on the
head node and runs there, callbacks, searcher and scheduler included. A callback that logs to MLflow
would then log from the head (where a laptop's SQLite file does not exist) and the driver would never
see a trial. So the driver keeps its tracker and progress line, and sends the head a
:class:`RelayCallback` instead: it posts each trial event, as plain data, to a :class:`Mailbox` actor,
and :class:`Relay` on the driver takes them from there and replays them into the real callbacks.
The searcher's proposal numbers and the scheduler's early stops reach the driver the same way
(:class:`RelayedTrialBook`), ahead of the trial events that depend on them.

Ray's storage (checkpoints, Tune's state) is the cluster's too: the head's ``$HPO_HOME/ray`` when the
cluster sets ``HPO_HOME`` (the compose file does: a volume every node mounts), else Tune's default on
the head. The best checkpoint comes back to the driver through a task on the head.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ray
from ray.tune import Callback

from hpo.callbacks import Progress, TrialTracker, _error_text
from hpo.trial_book import TrialBook
from hpo.trial_keys import BEST_KEY, NODE_KEY, TIME_KEY

log = logging.getLogger(__name__)

PUMP_INTERVAL_S = 0.5
_RESULT_KEYS = frozenset({"epoch", "training_iteration", "timestamp", BEST_KEY, NODE_KEY, TIME_KEY})


def client_connected() -> bool:
    """True when this process talks to its cluster through Ray Client."""
    return bool(ray.util.client.ray.is_connected())


def _on_head(fn: Callable[..., Any] | type) -> Any:
    """``fn`` as a zero-CPU task (or actor class) pinned to the node Ray Client serves from (the head)."""
    from ray.air.util.node import _force_on_current_node

    return _force_on_current_node(ray.remote(num_cpus=0)(fn))


class Mailbox:
    """A zero-CPU actor on the head holding trial events until the driver takes them."""

    def __init__(self) -> None:
        self.items: list[tuple[Any, ...]] = []

    def put(self, item: tuple[Any, ...]) -> None:
        self.items.append(item)

    def take(self) -> list[tuple[Any, ...]]:
        items, self.items = self.items, []
        return items


class RelayedTrialBook(TrialBook):
    """The trial book the head's searcher and scheduler write: each new entry is also posted to the mailbox.

    The driver replays the posts into its own :class:`TrialBook`, the one its tracker reads.
    """

    def __init__(self, mailbox: Any, numbers: dict[str, int] | None = None, stopped: set[str] | None = None) -> None:
        super().__init__(dict(numbers or {}), set(stopped or ()))
        self.mailbox = mailbox

    def set_number(self, trial_id: str, number: int) -> None:
        if trial_id not in self.numbers:
            self.mailbox.put.remote(("number", trial_id, number))
        super().set_number(trial_id, number)

    def mark_stopped(self, trial_id: str) -> None:
        if trial_id not in self.stopped:
            self.mailbox.put.remote(("stopped", trial_id))
        super().mark_stopped(trial_id)

    def mark_timed_out(self, trial_id: str, reason: str) -> None:
        if trial_id not in self.timed_out:
            self.mailbox.put.remote(("timed_out", trial_id, reason))
        super().mark_timed_out(trial_id, reason)

    def __reduce__(self) -> tuple[Any, ...]:
        # every field travels to the head: a resumed sweep's taken numbers, re-runs and replaced runs too
        return (RelayedTrialBook, (self.mailbox,), {k: v for k, v in vars(self).items() if k != "mailbox"})


class RelayCallback(Callback):  # type: ignore[misc]
    """Runs on the head inside Tune's controller: posts each trial event to the mailbox."""

    def __init__(self, mailbox: Any) -> None:
        self.mailbox = mailbox

    def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.mailbox.put.remote(("start", trial.trial_id, dict(trial.config)))

    def on_trial_result(
        self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any], **info: Any
    ) -> None:
        plain = {
            k: v for k, v in result.items()
            if k in _RESULT_KEYS or (isinstance(v, int | float) and not isinstance(v, bool))
        }
        self.mailbox.put.remote(("result", trial.trial_id, plain))

    def on_trial_complete(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.mailbox.put.remote(("complete", trial.trial_id, trial.checkpoint))

    def on_trial_error(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
        self.mailbox.put.remote(("error", trial.trial_id, _error_text(trial)))

    def on_experiment_end(self, trials: list[Any], **info: Any) -> None:
        # Waiting on this one put means every earlier put (same caller, same actor: in order) has landed
        # before fit() returns, so the driver's last take sees the whole sweep.
        ray.get(self.mailbox.put.remote(("end",)))


@dataclass
class _Trial:
    """What the driver's callbacks read of a trial, rebuilt from relayed events."""

    trial_id: str
    config: dict[str, Any]
    checkpoint: Any = None
    error_text: str | None = None
    error_file: str | None = None

    def get_error(self) -> str | None:
        return self.error_text


class Relay:
    """Driver side: the mailbox, the trial book and callback the head gets, and the replay into ``tracker``.

    Args:
        tracker: the driver's tracker; posts of the head's book are replayed into ``tracker.book``.
        progress: the driver's progress line.
    """

    def __init__(self, tracker: TrialTracker, progress: Progress) -> None:
        self.tracker, self.progress = tracker, progress
        self.mailbox = _on_head(Mailbox).remote()
        self.book = RelayedTrialBook(self.mailbox)  # for the head's searcher and scheduler
        # a resumed sweep: the numbers the store holds and the runs re-runs replace (hpo.resume.fill_book)
        self.book.taken.update(tracker.book.taken)
        self.book.replaces.update(tracker.book.replaces)
        self.callback = RelayCallback(self.mailbox)
        self.trials: dict[str, _Trial] = {}

    def run(self, fit: Callable[[], Any]) -> None:
        """``fit()`` (it blocks until the remote Tuner is done) while a thread replays events as they come."""
        done = threading.Event()

        def pump_until_done() -> None:
            while not done.wait(PUMP_INTERVAL_S):
                try:
                    self.pump()
                except Exception:  # noqa: BLE001 - a lost connection ends fit() too; say so once, there
                    log.warning("could not take trial events from the cluster", exc_info=True)
                    return

        pumper = threading.Thread(target=pump_until_done, name="hpo-relay", daemon=True)
        pumper.start()
        try:
            fit()
        finally:
            done.set()
            pumper.join()
            try:
                self.pump()  # what the head posted since the last take: on success, the end of the sweep
            except Exception:  # noqa: BLE001 - keep fit()'s own error (or Ctrl-C), not this one
                log.warning("could not take the last trial events from the cluster", exc_info=True)
            self.tracker.on_experiment_end([])
            self.progress.on_experiment_end([])

    def pump(self) -> None:
        """Take what the head posted and replay it, in order."""
        for event in ray.get(self.mailbox.take.remote()):
            self._replay(event)
        self.tracker.on_step_end(0, [])
        self.progress.on_step_end(0, [])

    def _replay(self, event: tuple[Any, ...]) -> None:
        kind, rest = event[0], event[1:]
        if kind == "number":
            self.tracker.book.set_number(rest[0], rest[1])
            return
        if kind == "stopped":
            self.tracker.book.mark_stopped(rest[0])
            return
        if kind == "timed_out":
            self.tracker.book.mark_timed_out(rest[0], rest[1])
            return
        if kind == "start":
            self.tracker.on_trial_start(0, [], self.trials.setdefault(rest[0], _Trial(rest[0], rest[1])))
            return
        trial = self.trials.get(rest[0]) if rest else None
        if trial is None:  # an event of a trial whose start never came: nothing to attach it to
            return
        if kind == "result":
            self.tracker.on_trial_result(0, [], trial, rest[1])
        elif kind == "complete":
            trial.checkpoint = rest[1]
            self.tracker.on_trial_complete(0, [], trial)
            self.progress.on_trial_complete(0, [], trial)
        elif kind == "error":
            trial.error_text = rest[1]
            self.tracker.on_trial_error(0, [], trial)
            self.progress.on_trial_error(0, [], trial)


def cluster_storage_path() -> str | None:
    """Ray Tune's storage as the head sees it: ``$HPO_HOME/ray`` there, else None (Tune's default)."""

    def on_head() -> str | None:
        home = os.environ.get("HPO_HOME")
        return str(Path(home).resolve() / "ray") if home else None

    result: str | None = ray.get(_on_head(on_head).remote())
    return result


def fetch_checkpoint(checkpoint: Any, folder: str) -> str:
    """Copy a checkpoint kept in the cluster's storage into ``folder`` on the driver; returns ``folder``."""

    def read_tree(checkpoint: Any) -> dict[str, bytes]:
        with checkpoint.as_directory() as root:
            return {
                os.path.relpath(os.path.join(here, name), root): Path(here, name).read_bytes()
                for here, _, names in os.walk(root) for name in names
            }

    files: dict[str, bytes] = ray.get(_on_head(read_tree).remote(checkpoint))
    for relative, data in files.items():
        target = Path(folder, relative)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(data)
    return folder
