"""The write-ahead journal: every write to the store goes to a local file first, then to MLflow in order.

A sweep's writes (runs, params, tags, per-epoch points, artifacts, status changes) are appended as JSON
lines to ``$HPO_HOME/journal/<sweep>.<session>.jsonl`` (one file per driver session) and only then
replayed to the store by a background thread (``tracker.replay``), so a tracking server or database that
is down for minutes never stops the sweep and loses nothing: the journal keeps what the store has not
confirmed, and ``hpo sync`` (or the next ``hpo run`` of the sweep) writes it later.

This module owns the files: their names, the writer (one per session, holding a lock on its file), the
header line, and removing a journal the store has in full. Entries (one JSON object a line, ``op`` says
which): ``journal`` (the header: sweep, store URI without password, experiment, parent run id), ``run``
(a child run by our key, tag ``hpo.run_key``), ``params``, ``tags`` (``refs``: tags whose value is a run
key, replaced by its run id), ``metrics`` (``[key, value, timestamp_ms, step]`` points), ``text`` (a small
artifact inline), ``files`` (a folder copied beside the journal), ``end`` (status, end time), ``close``.
A run is named by ``run_id`` (it existed) or ``key`` (created by an earlier ``run`` entry).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from tracker.uri import home, redact

__all__ = [
    "JOURNAL_VERSION",
    "Journal",
    "JournalWriteError",
    "cursor_path",
    "files_folder",
    "journal_folder",
    "list_journals",
    "locked",
    "new_run_key",
    "read_header",
    "remove",
    "shown_uri",
]

JOURNAL_VERSION = 1
SUFFIX = ".jsonl"
FSYNC_EVERY_S = 2.0  # appends reach the OS at once (a killed driver loses nothing); fsync at most this often
INLINE_TEXT_CHARS = 1_000_000  # a larger text artifact is copied beside the journal instead of inlined

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
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in sweep) or "sweep"  # a stored name may be odd
        path = folder / f"{safe}.{stamp}-{uuid.uuid4().hex[:8]}{SUFFIX}"
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


@contextlib.contextmanager
def locked(path: Path) -> Iterator[bool]:
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


def shown_uri(uri: str) -> str:
    """``uri`` as a journal keeps it: the password (if any) masked, a user without one kept as is."""
    credentials = uri.partition("://")[2].rpartition("@")[0]
    return redact(uri) if ":" in credentials else uri


def remove(journal: Path) -> None:
    """Delete a fully written journal, its cursor and its artifact copies."""
    shutil.rmtree(files_folder(journal), ignore_errors=True)
    cursor_path(journal).unlink(missing_ok=True)
    journal.unlink(missing_ok=True)
