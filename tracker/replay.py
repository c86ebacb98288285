"""Replaying journals to the store, exactly once: the driver's background thread and ``hpo sync``.

Writing once, whatever crashes: MLflow's ``create_run`` is not idempotent, so every run carries our own
key (tag ``hpo.run_key``, made before the run exists) and replay looks a run up by that key before
creating it. A cursor file beside the journal records what the store confirmed (a byte offset and the
key -> run id map); after a restart the first entries past the cursor may have reached the store without
the cursor knowing, so replay checks stored metric points before sending them again, until it meets a
batch of which nothing was stored (replay is in order: nothing after that can have been). Params, tags,
artifacts and status changes are idempotent and simply written again.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracker import schema
from tracker.journal import cursor_path, list_journals, locked, read_header, remove, shown_uri
from tracker.uri import resolve_tracking_uri

__all__ = [
    "DRAIN_WAIT_ENV",
    "ReplayThread",
    "Replayer",
    "SyncReport",
    "drain_wait_s",
    "sync_journals",
]

log = logging.getLogger(__name__)

MAX_POINTS_PER_BATCH = 1000  # MLflow's log_batch limit
MAX_PARAMS_PER_BATCH = 100
MAX_TAGS_PER_BATCH = 100
POLL_S = 0.2  # how often the replay thread looks for new entries when nobody wakes it
MAX_BACKOFF_S = 30.0
SLOW_STORE_S = 1.0  # a store call running longer than this counts as an outage for whoever waits on it
DRAIN_WAIT_ENV = "HPO_JOURNAL_WAIT_S"  # how long the sweep's end waits for a store that makes no progress
DEFAULT_DRAIN_WAIT_S = 30.0
# MLflow errors that no retry can fix: the entry is skipped (with a warning) instead of blocking the journal
_PERMANENT_ERRORS = frozenset({"INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST", "INVALID_STATE",
                               "RESOURCE_ALREADY_EXISTS"})


@dataclass
class Cursor:
    """What the store has confirmed of one journal: bytes replayed, entries written, key -> run id."""

    offset: int = 0
    entries: int = 0
    runs: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, journal: Path) -> Cursor:
        try:
            doc = json.loads(cursor_path(journal).read_text())
            return cls(int(doc["offset"]), int(doc["entries"]), dict(doc["runs"]))
        except (OSError, ValueError, KeyError, TypeError):
            return cls()  # none yet (or unreadable): replay from the start, checking the store

    def save(self, journal: Path) -> None:
        path = cursor_path(journal)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps({"offset": self.offset, "entries": self.entries, "runs": self.runs}))
        os.replace(tmp, path)  # atomic: a crash leaves the old cursor or the new one


@dataclass
class Counts:
    entries: int = 0
    points: int = 0
    points_skipped: int = 0  # already stored (found by the check after a restart)
    runs_created: int = 0
    runs_found: int = 0


class Replayer:
    """Writes one journal's pending entries to the store, in order, exactly once.

    Args:
        journal: the ``.jsonl`` file.
        client: an ``MlflowClient`` on the journal's store.
    """

    def __init__(self, journal: Path, client: Any) -> None:
        header = read_header(journal)
        if header is None:
            raise ValueError(f"{journal} is not a journal (no header line)")
        self.path = journal
        self.client = client
        self.header = header
        self.experiment_id = str(header["experiment_id"])
        self.cursor = Cursor.load(journal)
        self.cursor.runs.setdefault("", header["parent_run_id"])
        self.verify = True  # until a batch proves nothing past the cursor reached the store
        self.counts = Counts()
        self.closed = False  # the writer's end marker was replayed
        self._stored: dict[tuple[str, str], set[tuple[int, int]]] = {}
        self._created: set[str] = set()
        self.lock = threading.Lock()  # guards cursor.runs for readers on other threads

    # -- reading -------------------------------------------------------------------------------------
    def pending(self) -> Iterator[tuple[int, dict[str, Any]]]:
        """``(end offset, entry)`` for each complete line past the cursor (a torn last line waits)."""
        with self.path.open("rb") as f:
            f.seek(self.cursor.offset)
            data = f.read()
        offset = self.cursor.offset
        for line in data.splitlines(keepends=True):
            if not line.endswith(b"\n"):
                break  # being written, or torn by a kill: it never counted as written
            offset += len(line)
            try:
                entry = json.loads(line)
            except ValueError:
                log.warning("skipping an unreadable line in %s at byte %d", self.path, offset - len(line))
                continue
            yield offset, entry

    def caught_up(self) -> bool:
        return self.cursor.offset >= self.path.stat().st_size

    def run_id(self, key: str) -> str | None:
        with self.lock:
            return self.cursor.runs.get(key)

    # -- writing -------------------------------------------------------------------------------------
    def replay(self, should_stop: Callable[[], bool] = lambda: False) -> int:
        """Write every pending entry; returns how many. Raises the store's error on the first failure
        (the cursor then points at the first entry not written: call again later)."""
        done = 0
        group: list[tuple[str, list[list[Any]]]] = []
        group_points, group_end, group_entries = 0, 0, 0

        def write_group() -> None:
            nonlocal group, group_points, group_entries
            if group:
                self._write_points(group)
                self._advance(group_end, group_entries)
            group, group_points, group_entries = [], 0, 0

        for end, entry in self.pending():
            if should_stop():
                break
            if entry.get("op") == "metrics":
                points = entry.get("points") or []
                if group_points + len(points) > MAX_POINTS_PER_BATCH:
                    write_group()
                group.append((self._resolve(entry), points))
                group_points, group_end, group_entries = group_points + len(points), end, group_entries + 1
                done += 1
                continue
            write_group()
            self._apply(entry)
            self._advance(end, 1)
            done += 1
        write_group()
        return done

    def _advance(self, end: int, entries: int) -> None:
        with self.lock:
            self.cursor.offset = end
            self.cursor.entries += entries
        self.counts.entries += entries
        self.cursor.save(self.path)

    def _resolve(self, entry: Mapping[str, Any]) -> str:
        if "run_id" in entry:
            return str(entry["run_id"])
        run_id = self.run_id(str(entry.get("key", "")))
        if run_id is None:  # a key with no "run" entry before it: a journal not written by us
            raise KeyError(f"{self.path}: run key {entry.get('key')!r} is used before its run is created")
        return run_id

    def _apply(self, entry: Mapping[str, Any]) -> None:
        op = entry.get("op")
        try:
            if op == "run":
                self._create_run(entry)
            elif op == "params":
                self._params(self._resolve(entry), entry["params"])
            elif op == "tags":
                tags = dict(entry["tags"])
                for name, key in (entry.get("refs") or {}).items():  # a tag naming a run by our key
                    tags[name] = self.run_id(key) or tags[name]
                self._tags(self._resolve(entry), tags)
            elif op == "text":
                self.client.log_text(self._resolve(entry), entry["text"], entry["file"])
            elif op == "files":
                folder = self.path.parent / entry["folder"]
                if folder.is_dir():
                    self.client.log_artifacts(self._resolve(entry), str(folder), entry.get("artifact_path"))
                else:
                    log.warning("%s: the artifact copy %s is gone; %s not uploaded", self.path, folder,
                                entry.get("artifact_path"))
            elif op == "end":
                self.client.set_terminated(self._resolve(entry), status=entry["status"], end_time=entry["ms"])
            elif op == "close":
                self.closed = True
        except Exception as e:
            if getattr(e, "error_code", None) not in _PERMANENT_ERRORS:
                raise
            # the store refuses this entry for good (retrying cannot help): skip it rather than block the rest
            log.warning("%s: the store refused a %s entry, skipped: %s", self.path, op, e)

    def _create_run(self, entry: Mapping[str, Any]) -> None:
        """Create the run of ``entry`` (or find it by its key) and log the params that came with it.

        The params travel in the same entry as the run, so no run exists in the store without them: a
        driver killed between the two leaves the entry unconfirmed, and replaying it logs the same values
        again (MLflow accepts an identical param twice).
        """
        key = str(entry["key"])
        run_id = self.run_id(key)
        if run_id is None:
            run_id = self._find(key) if self.verify else None
            if run_id is not None:
                self.counts.runs_found += 1
            else:
                tags = {**entry.get("tags", {}), schema.RUN_KEY: key}
                parent = entry.get("parent_run_id")
                if parent:
                    tags[schema.PARENT_RUN_ID] = parent
                run = self.client.create_run(self.experiment_id, start_time=entry.get("ms"), tags=tags,
                                             run_name=entry.get("name"))
                run_id = run.info.run_id
                self._created.add(run_id)
                self.counts.runs_created += 1
            with self.lock:
                self.cursor.runs[key] = run_id
        if entry.get("params"):
            self._params(run_id, entry["params"])

    def _find(self, key: str) -> str | None:
        from mlflow.entities import ViewType

        found = self.client.search_runs([self.experiment_id], filter_string=f"tags.`{schema.RUN_KEY}` = '{key}'",
                                        run_view_type=ViewType.ALL, max_results=2)
        return found[0].info.run_id if found else None

    def _params(self, run_id: str, params: Mapping[str, str]) -> None:
        from mlflow.entities import Param

        entries = [Param(k, v) for k, v in params.items()]
        for start in range(0, len(entries), MAX_PARAMS_PER_BATCH):
            self.client.log_batch(run_id, params=entries[start : start + MAX_PARAMS_PER_BATCH], synchronous=True)

    def _tags(self, run_id: str, tags: Mapping[str, str]) -> None:
        from mlflow.entities import RunTag

        entries = [RunTag(k, v) for k, v in tags.items()]
        for start in range(0, len(entries), MAX_TAGS_PER_BATCH):
            self.client.log_batch(run_id, tags=entries[start : start + MAX_TAGS_PER_BATCH], synchronous=True)

    def _write_points(self, group: list[tuple[str, list[list[Any]]]]) -> None:
        """One log_batch per run for a group of metric entries; after a restart, only points not stored."""
        from mlflow.entities import Metric

        by_run: dict[str, list[list[Any]]] = {}
        for run_id, points in group:
            by_run.setdefault(run_id, []).extend(points)
        found_any = False
        for run_id, points in by_run.items():
            if self.verify and run_id not in self._created:
                before = len(points)
                points = [p for p in points if (p[3], p[2]) not in self._stored_points(run_id, p[0])]
                found_any = found_any or len(points) < before
                self.counts.points_skipped += before - len(points)
            if points:
                metrics = [Metric(key, float(value), int(ms), int(step)) for key, value, ms, step in points]
                self.client.log_batch(run_id, metrics=metrics, synchronous=True)
                self.counts.points += len(points)
        if self.verify and not found_any:
            self.verify, self._stored = False, {}  # nothing of this batch was stored: nothing later was either

    def _stored_points(self, run_id: str, key: str) -> set[tuple[int, int]]:
        if (run_id, key) not in self._stored:
            history = self.client.get_metric_history(run_id, key)
            self._stored[(run_id, key)] = {(int(m.step), int(m.timestamp)) for m in history}
        return self._stored[(run_id, key)]


# -- the driver's background writer -----------------------------------------------------------------------
class ReplayThread:
    """Replays a live journal to the store on a daemon thread; on failure it backs off and tries again.

    Trials never wait on it: the writer appends to the journal and wakes this thread. MLflow's HTTP client
    retries a dead server for minutes inside one call; that blocks only this thread.
    """

    def __init__(self, replayer: Replayer, on_exit: Callable[[], None] = lambda: None) -> None:
        self.replayer = replayer
        self._on_exit = on_exit
        self.failing: BaseException | None = None
        self._busy_since: float | None = None
        self._wake = threading.Event()
        self._changed = threading.Condition()
        self._stop = False
        self._draining = False  # the sweep has ended: retry a failing store every second, not every 30
        self._said_down = False
        self._thread = threading.Thread(target=self._loop, name="hpo-journal-replay", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def healthy(self) -> bool:
        """The store answered the last call and is not stuck in one now."""
        busy = self._busy_since
        return self.failing is None and (busy is None or time.monotonic() - busy < SLOW_STORE_S)

    def wait_for_run(self, key: str, timeout_s: float) -> str | None:
        """The run id of ``key`` once replayed, waiting up to ``timeout_s`` while the store is healthy."""
        deadline = time.monotonic() + timeout_s
        with self._changed:
            while (run_id := self.replayer.run_id(key)) is None:
                left = deadline - time.monotonic()
                if left <= 0 or not self.healthy():
                    return None
                self._changed.wait(min(left, 0.05))
        return run_id

    def drain(self, wait_s: float) -> bool:
        """Wait until everything is replayed, or until the store made no progress for ``wait_s``; stops
        the thread either way. Returns True when the store has everything."""
        self.failing = None  # try at once, whatever the backoff said
        self._draining = True
        self.wake()
        last_progress, last_offset = time.monotonic(), -1
        while not self.replayer.caught_up() or self._busy_since is not None:
            offset = self.replayer.cursor.offset
            if offset != last_offset:
                last_progress, last_offset = time.monotonic(), offset
            elif time.monotonic() - last_progress > wait_s:
                break
            if not self._thread.is_alive():
                break
            with self._changed:
                self._changed.wait(0.05)
            if self.failing is None:  # a failing store is retried on the thread's own backoff
                self.wake()
        self._stop = True
        self.wake()
        # a thread in its backoff ends at once; one inside a store call (MLflow may retry for minutes) keeps
        # the journal's lock until that call returns, so `hpo sync` cannot replay it at the same time
        self._thread.join(timeout=2.0)
        return self.replayer.caught_up()

    def _loop(self) -> None:
        try:
            self._replay_until_stopped()
        finally:
            self._on_exit()

    def _replay_until_stopped(self) -> None:
        backoff = 0.0
        while not self._stop:
            self._wake.wait(min(backoff, 1.0) if self._draining and backoff else (backoff or POLL_S))
            self._wake.clear()
            if self._stop:
                break
            try:
                self._busy_since = time.monotonic()
                self.replayer.replay(should_stop=lambda: self._stop)
                if self._said_down:
                    log.warning("the store answers again; journaled writes are being written")
                self.failing, backoff, self._said_down = None, 0.0, False
            except Exception as e:  # noqa: BLE001 - any store error: keep the journal, try later
                if not self._said_down:
                    self._said_down = True
                    log.warning("the store does not take writes (%s); results stay in the journal %s and are "
                                "written when it answers", _short(e), self.replayer.path)
                self.failing = e
                backoff = min(MAX_BACKOFF_S, max(1.0, backoff * 2))
            finally:
                self._busy_since = None
                with self._changed:
                    self._changed.notify_all()


def _short(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    return (text[0] if text else type(e).__name__)[:200]


def drain_wait_s() -> float:
    """How long a sweep's end waits for a store that makes no progress (``$HPO_JOURNAL_WAIT_S``, else 30 s)."""
    try:
        return max(0.0, float(os.environ.get(DRAIN_WAIT_ENV, DEFAULT_DRAIN_WAIT_S)))
    except ValueError:
        return DEFAULT_DRAIN_WAIT_S


# -- hpo sync --------------------------------------------------------------------------------------------
@dataclass
class SyncReport:
    """What ``sync_journals`` did with one journal."""

    path: Path
    sweep: str
    status: str  # written | in_use | other_store | failed
    counts: Counts = field(default_factory=Counts)
    left: int = 0  # entries still not written
    message: str = ""


def sync_journals(
    open_client: Callable[[str], Any],
    *,
    name: str | None = None,
    tracking_uri: str | None = None,
    folder: Path | None = None,
) -> list[SyncReport]:
    """Write every journal (of sweep or parent run ``name``, or all) left under ``folder`` to its store.

    Each journal goes to the store it was written for (its header names it, without password): a journal
    is only ever written there, where its sweep's parent run is. A journal whose writer still runs is left
    to it. A journal whose every entry is in the store is deleted with its cursor and artifact copies.

    Args:
        open_client: opens an ``MlflowClient`` on a URI (raises ``StoreUnavailable`` when it does not answer).
        name: a sweep name or a parent run id; None for every journal.
        tracking_uri: the store in use: only journals of this store are written; None for each journal's
            own store (one whose URI carried a password is written only when ``tracking_uri`` gives it).
        folder: where the journals are (default ``$HPO_HOME/journal``).
    """
    reports = []
    clients: dict[str, Any] = {}
    for path in list_journals(folder):
        header = read_header(path)
        if header is None:
            continue
        sweep = str(header.get("sweep", ""))
        if name is not None and name not in (sweep, header.get("parent_run_id")):
            continue
        written_for = str(header.get("tracking_uri", ""))
        uri = _store_of(written_for, tracking_uri)
        if uri is None:
            why = ("its store's URI carries a password: give it with --tracking-uri or $MLFLOW_TRACKING_URI"
                   if tracking_uri is None else "it was written for another store")
            reports.append(SyncReport(path, sweep, "other_store", message=f"{written_for}: {why}"))
            continue
        with locked(path) as free:
            if not free:
                reports.append(SyncReport(path, sweep, "in_use", message="its sweep is still running"))
                continue
            if uri not in clients:
                clients[uri] = open_client(uri)
            reports.append(_sync_one(path, sweep, clients[uri]))
    return reports


def _store_of(written_for: str, given: str | None) -> str | None:
    """The URI to write a journal to: ``given`` when it is the journal's store, else the journal's own
    (when it has no password: the header keeps none), else None."""
    if given is not None:
        return given if shown_uri(given) == written_for else None
    if written_for and "***" not in written_for:
        return written_for
    default = resolve_tracking_uri()  # $MLFLOW_TRACKING_URI may carry the password
    return default if shown_uri(default) == written_for else None


def _sync_one(path: Path, sweep: str, client: Any) -> SyncReport:
    replayer = Replayer(path, client)
    try:
        replayer.replay()
    except Exception as e:  # noqa: BLE001 - report it; the journal keeps what was not written
        left = sum(1 for _ in replayer.pending())
        return SyncReport(path, sweep, "failed", replayer.counts, left, _short(e))
    if next(replayer.pending(), None) is None:  # its writer is gone (we hold the lock) and the store has every
        remove(path)  # entry; a torn last line (the writer was killed mid-write) never counted as written
    return SyncReport(path, sweep, "written", replayer.counts)
