"""Where a sweep's start-up seconds go, and the store opened while Ray starts.

``hpo run`` spends most of a short sweep before its first epoch: Python and its imports, Ray's local
start (GCS, raylet, workers: the largest part), opening the store (importing MLflow, creating a new
SQLite file), building the Tuner, and the first trial's worker importing torch. :class:`PhaseClock`
marks each phase against the process's launch (``hpo run --verbose`` prints them as they end);
:class:`StoreOpening` opens the store (and imports what the driver needs next) on a thread while the
main thread starts Ray: ``ray.init`` must run on the main thread (Ray's head processes die with the
thread that started them, and its SIGTERM handler is only set there), the store has no such tie.
"""

from __future__ import annotations

import os
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Generic, TextIO, TypeVar

T = TypeVar("T")

__all__ = ["PhaseClock", "StoreOpening", "launched_at"]


def launched_at() -> float:
    """Unix time this process was launched (from ``/proc``), or now where ``/proc`` is missing."""
    try:
        stat = Path(f"/proc/{os.getpid()}/stat").read_text()
        uptime_s = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError):
        return time.time()
    start_ticks = int(stat[stat.rfind(")") + 2:].split()[19])
    return time.time() - uptime_s + start_ticks / os.sysconf("SC_CLK_TCK")


class PhaseClock:
    """Start-up phases, each as seconds since launch; printed to ``stream`` as they end when ``verbose``.

    Thread-safe: the store's thread marks its own phases.
    """

    def __init__(self, *, verbose: bool = False, stream: TextIO | None = None) -> None:
        self.launched = launched_at()
        self.verbose = verbose
        self.stream = stream
        self.phases: list[tuple[str, float]] = []
        self._lock = threading.Lock()
        self._marked: set[str] = set()

    def mark(self, phase: str, detail: str = "") -> None:
        """Record that ``phase`` ended now (once per name: a later mark of the same phase is ignored)."""
        at = time.time() - self.launched
        with self._lock:
            if phase in self._marked:
                return
            self._marked.add(phase)
            self.phases.append((phase, at))
        if self.verbose:
            print(f"[start-up] {at:6.2f} s  {phase}{f' ({detail})' if detail else ''}",
                  file=self.stream or sys.stderr, flush=True)

    def seconds(self, phase: str) -> float | None:
        """When ``phase`` ended, in seconds since launch; None when it has not."""
        return next((at for name, at in self.phases if name == phase), None)

    def first_result_callback(self) -> Any:
        """A Tune callback marking the first trial's start and its first reported epoch (imports Ray Tune)."""
        from ray.tune import Callback

        clock = self

        class _FirstEpoch(Callback):  # type: ignore[misc]
            def on_trial_start(self, iteration: int, trials: list[Any], trial: Any, **info: Any) -> None:
                clock.mark("first trial started")

            def on_trial_result(self, iteration: int, trials: list[Any], trial: Any, result: dict[str, Any],
                                **info: Any) -> None:
                clock.mark("first epoch reported")

            def __reduce__(self) -> tuple[Any, tuple[()]]:  # Tune pickles callbacks into tuner.pkl
                return (Callback, ())

        return _FirstEpoch()


class StoreOpening(Generic[T]):
    """Runs ``open_store`` on a thread from construction; :meth:`result` waits and returns or raises."""

    def __init__(self, open_store: Callable[[], T]) -> None:
        self._open = open_store
        self._value: T | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name="hpo-store-opening", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            self._value = self._open()
        except BaseException as e:  # noqa: BLE001 - handed to the main thread by result()
            self._error = e

    def result(self) -> T:
        """The opened store, once the thread is done.

        Raises:
            Whatever opening the store raised (e.g. ``TrackingError``).
        """
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]

    def wait(self) -> None:
        """Let the thread finish (an error path must not leave a half-written store behind)."""
        self._thread.join()
