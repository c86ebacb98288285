"""One live driver per sweep: a lock file on this host, a heartbeat on the parent run for the others.

On the driver's host the lease is an exclusive ``fcntl.flock`` on ``$HPO_HOME/locks/<experiment>-<sweep>.lock``:
the kernel releases it when the process dies however it dies, so a second ``hpo run`` knows at once
whether the first is alive, even while the store is unreachable. Across hosts only the store is shared:
the driver rewrites its host, pid and the time on the parent run every ``schema.HEARTBEAT_S`` from a
daemon thread, and ``tracker.liveness`` judges a beat older than ``schema.HEARTBEAT_STALE_S`` from another
host as a dead driver.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import socket
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TextIO

from hpo import defaults
from hpo.errors import ConfigError
from tracker import schema
from tracker.liveness import driver_gone

log = logging.getLogger(__name__)


class SweepBusy(ConfigError):
    """Another live driver holds the sweep (exit 2: running it twice would train every trial twice)."""


def lock_path(experiment: str, sweep: str) -> Path:
    """The lock file of sweep ``sweep`` in ``experiment`` under ``$HPO_HOME/locks``."""
    safe = re.sub(r"[^A-Za-z0-9_.\-]", "_", f"{experiment}-{sweep}")
    return defaults.home() / "locks" / f"{safe}.lock"


class Lease:
    """The local half of the lease: hold the lock file for as long as the sweep runs.

    Use as a context manager; ``acquire`` raises :class:`SweepBusy` naming the holder's pid when another
    process on this host holds it.
    """

    def __init__(self, experiment: str, sweep: str) -> None:
        self.path = lock_path(experiment, sweep)
        self.sweep = sweep
        self._file: TextIO | None = None

    def acquire(self) -> None:
        """Take the lock without waiting.

        Raises:
            SweepBusy: another process holds it.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(self.path, "a+", encoding="utf-8")  # noqa: SIM115 - held until release()
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            handle.close()
            raise SweepBusy(
                f"sweep {self.sweep} is being run by {holder} on this machine (lock {self.path}); "
                "wait for it to end, or stop it first; run it under another name to start a separate sweep"
            ) from None
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        self._file = handle

    def release(self) -> None:
        """Give the lock back (closing the file releases the flock)."""
        if self._file is not None:
            self._file.close()
            self._file = None

    def __enter__(self) -> Lease:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def check_remote_driver(tags: Mapping[str, str], state: str, sweep: str) -> None:
    """Refuse a sweep that a driver on another host still beats for.

    Raises:
        SweepBusy: ``state`` is running, the beat is from another host and fresh.
    """
    host = tags.get(schema.DRIVER_HOST)
    if state != "running" or not tags.get(schema.HEARTBEAT) or host == socket.gethostname():
        return  # on this host the lock file has decided already
    if not driver_gone(tags):
        age = time.time() - float(tags[schema.HEARTBEAT])
        raise SweepBusy(
            f"sweep {sweep} is being run by pid {tags.get(schema.DRIVER_PID)} on {host} (last heartbeat "
            f"{age:.0f} s ago); wait for it, or for {schema.HEARTBEAT_STALE_S:.0f} s without a beat if it died"
        )


def beat_tags(elapsed_s: float) -> dict[str, str]:
    """The heartbeat tags as of now, with the sweep's running time so far."""
    return {
        schema.DRIVER_HOST: socket.gethostname(),
        schema.DRIVER_PID: str(os.getpid()),
        schema.HEARTBEAT: f"{time.time():.3f}",
        schema.ELAPSED_S: f"{elapsed_s:.1f}",
    }


class Heartbeat:
    """A daemon thread writing ``beat_tags`` to the parent run every ``interval_s``.

    Args:
        client: the sweep's ``MlflowClient`` (one tag batch per beat: a few milliseconds).
        run_id: the parent run.
        elapsed_s: returns the sweep's running time so far, across resumes.
        interval_s: seconds between beats.
    """

    def __init__(self, client: Any, run_id: str, elapsed_s: Callable[[], float],
                 interval_s: float = schema.HEARTBEAT_S) -> None:
        self.client, self.run_id, self.elapsed_s, self.interval_s = client, run_id, elapsed_s, interval_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hpo-heartbeat", daemon=True)

    def beat(self) -> None:
        """Write one beat now; a store that does not answer is retried at the next beat."""
        from mlflow.entities import RunTag

        tags = [RunTag(k, v) for k, v in beat_tags(self.elapsed_s()).items()]
        try:
            self.client.log_batch(self.run_id, tags=tags, synchronous=True)
        except Exception as e:  # noqa: BLE001 - a missed beat must never stop the sweep
            log.warning("heartbeat to the store failed (retried in %.0f s): %s", self.interval_s, e)

    def start(self) -> Heartbeat:
        self.beat()
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.beat()
