"""The write-ahead journal: every write to the store goes to a local file first, then to MLflow in order.

A sweep's writes (runs, params, tags, per-epoch points, artifacts, status changes) are appended as JSON
lines to ``$HPO_HOME/journal/<sweep>.<session>.jsonl`` (one file per driver session) and only then
replayed to the store by a background thread, so a tracking server or database that is down for minutes
never stops the sweep and loses nothing: the journal keeps what the store has not confirmed, and
``hpo sync`` (or the next ``hpo run`` of the sweep) writes it later.

Writing once, whatever crashes: MLflow's ``create_run`` is not idempotent, so every run carries our own
key (tag ``hpo.run_key``, made before the run exists) and replay looks a run up by that key before
creating it. A cursor file beside the journal records what the store confirmed (a byte offset and the
key -> run id map); after a restart the first entries past the cursor may have reached the store without
the cursor knowing, so replay checks stored metric points before sending them again, until it meets a
batch of which nothing was stored (replay is in order: nothing after that can have been). Params, tags,
artifacts and status changes are idempotent and simply written again.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracker import schema
from tracker.uri import home, redact, resolve_tracking_uri

__all__ = [
    "JOURNAL_VERSION",
    "Journal",
    "JournalWriteError",
    "ReplayThread",
    "Replayer",
    "SyncReport",
    "journal_folder",
    "new_run_key",
    "sync_journals",
]

log = logging.getLogger(__name__)

JOURNAL_VERSION = 1
SUFFIX = ".jsonl"
FSYNC_EVERY_S = 2.0  # appends reach the OS at once (a killed driver loses nothing); fsync at most this often
INLINE_TEXT_CHARS = 1_000_000  # a larger text artifact is copied beside the journal instead of inlined
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


class JournalWriteError(Exception):
    """The journal file cannot be written (disk full, read-only or missing folder); names the path."""


def journal_folder() -> Path:
    """Where journals live: ``$HPO_HOME/journal`` (``./.hpo/journal`` by default)."""
    return home() / "journal"


def new_run_key() -> str:
    """Our own key for a run that may not exist in the store yet (tag ``hpo.run_key``)."""
    return uuid.uuid4().hex


def now_ms() -> int:
    return int(time.time() * 1000)


# -- writing ---------------------------------------------------------------------------------------------
class Journal:
    """The append-only file of one driver session; holds an exclusive lock on it while open.

    Args:
        path: the ``.jsonl`` file (created with its header by :meth:`create`).
    """

    def __init__(self, path: Path, handle: Any) -> None:
        self.path = path
        self._file = handle
        self._lock = threading.Lock()
        self._last_sync = time.monotonic()
        self._unsynced = False
        self.closed = False
        self.broken: JournalWriteError | None = None  # after a failed write nothing more is appended

    @classmethod
    def create(
        cls,
        folder: Path,
        *,
        sweep: str,
        tracking_uri: str,
        experiment_id: str,
        parent_run_id: str,
    ) -> Journal:
        """A new journal file for one session of sweep ``sweep`` (its parent run exists already).

        Raises:
            JournalWriteError: the folder or file cannot be created or written.
        """
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        path = folder / f"{sweep or 'sweep'}.{stamp}-{uuid.uuid4().hex[:8]}{SUFFIX}"
        try:
            folder.mkdir(parents=True, exist_ok=True)
            # unbuffered: each append is in the OS when it returns (a killed driver loses nothing), and a failed
            # write leaves no bytes in a buffer to be flushed later behind a torn line
            handle = open(path, "ab", buffering=0)  # noqa: SIM115 - held open for the session
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # `hpo sync` leaves a live journal alone
        except OSError as e:
            raise _write_error(path, e) from None
        journal = cls(path, handle)
        journal.append({"op": "journal", "version": JOURNAL_VERSION, "sweep": sweep, "pid": os.getpid(),
                        "tracking_uri": shown_uri(tracking_uri), "experiment_id": experiment_id,
                        "parent_run_id": parent_run_id, "created_ms": now_ms()})
        journal.sync()
        return journal

    @property
    def files(self) -> Path:
        """Folder beside the journal for artifact copies it refers to."""
        return files_folder(self.path)

    def append(self, entry: Mapping[str, Any]) -> None:
        """Write one entry through to the OS (a killed process loses nothing); fsync'd by :meth:`sync`.

        Raises:
            JournalWriteError: the write failed (e.g. disk full).
        """
        line = (json.dumps(entry, separators=(",", ":"), allow_nan=False) + "\n").encode()
        with self._lock:
            if self.broken is not None:  # a torn line may end the file: appending after it would corrupt the next
                raise self.broken
            if self.closed:
                raise JournalWriteError(f"the journal {self.path} is closed; nothing more can be written to it")
            try:
                view = memoryview(line)
                while view:  # a raw write may take part of the line
                    view = view[self._file.write(view) :]
            except OSError as e:
                self.broken = _write_error(self.path, e)
                raise self.broken from None
            self._unsynced = True

    def sync(self, *, if_due: bool = False) -> None:
        """fsync what was appended (a power loss then loses nothing); ``if_due``: only every few seconds."""
        with self._lock:
            if self.closed or not self._unsynced:
                return
            if if_due and time.monotonic() - self._last_sync < FSYNC_EVERY_S:
                return
            try:
                os.fsync(self._file.fileno())
            except OSError as e:
                raise _write_error(self.path, e) from None
            self._unsynced, self._last_sync = False, time.monotonic()

    def close(self) -> None:
        """Append the end marker and fsync: the writer of this session is done (the lock stays: see release)."""
        if self.closed:
            return
        self.append({"op": "close", "ms": now_ms()})
        self.sync()
        with self._lock:
            self.closed = True

    def release(self) -> None:
        """Close the file and release its lock: called once nothing in this process replays it any more."""
        with self._lock:
            self.closed = True
            if not self._file.closed:
                self._file.close()

    def size(self) -> int:
        return self.path.stat().st_size


def _write_error(path: Path, e: OSError) -> JournalWriteError:
    if e.errno == errno.ENOSPC:
        why, fix = "the disk is full", f"free space in {path.parent} (or point $HPO_HOME at a disk with room)"
    else:
        why, fix = e.strerror or str(e), f"make {path.parent} a folder this user can write (or point $HPO_HOME at one)"
    return JournalWriteError(
        f"cannot write the journal {path}: {why}. Every result is written there before it reaches the store; "
        f"{fix} and run the sweep again"
    )


def files_folder(journal: Path) -> Path:
    return journal.with_name(journal.name[: -len(SUFFIX)] + ".files")


def cursor_path(journal: Path) -> Path:
    return journal.with_name(journal.name[: -len(SUFFIX)] + ".cursor.json")


# -- replaying -------------------------------------------------------------------------------------------
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


def read_header(journal: Path) -> dict[str, Any] | None:
    """The first entry of a journal, or None when it has none (yet) or is not one of ours."""
    try:
        with journal.open("rb") as f:
            line = f.readline()
    except OSError:
        return None
    if not line.endswith(b"\n"):
        return None
    try:
        header = json.loads(line)
    except ValueError:
        return None
    return header if isinstance(header, dict) and header.get("op") == "journal" else None


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
        key = str(entry["key"])
        if self.run_id(key) is not None:
            return
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


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[bool]:
    """Try the journal's lock: True when no live driver holds it (then held until the block ends)."""
    with path.open("rb") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def list_journals(folder: Path | None = None) -> list[Path]:
    """Every journal file under ``folder`` (default :func:`journal_folder`), oldest first."""
    folder = folder or journal_folder()
    return sorted(folder.glob(f"*{SUFFIX}"), key=lambda p: (p.stat().st_mtime, p.name)) if folder.is_dir() else []


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
        with _locked(path) as free:
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


def shown_uri(uri: str) -> str:
    """``uri`` as a journal keeps it: the password (if any) masked, a user without one kept as is."""
    credentials = uri.partition("://")[2].rpartition("@")[0]
    return redact(uri) if ":" in credentials else uri


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


def remove(journal: Path) -> None:
    """Delete a fully written journal, its cursor and its artifact copies."""
    shutil.rmtree(files_folder(journal), ignore_errors=True)
    cursor_path(journal).unlink(missing_ok=True)
    journal.unlink(missing_ok=True)
