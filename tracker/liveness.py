"""Whether a sweep tagged ``running`` still has a live driver: the one rule every reader applies.

The driver (``hpo.lease``) beats on its parent run every ``schema.HEARTBEAT_S`` with its host and pid.
A reader on the driver's own host asks the process table (a driver that cannot reach the store keeps
beating nowhere but is still alive); on another host only the beat's age can tell, and a beat older than
``schema.HEARTBEAT_STALE_S`` means the driver is gone. A sweep written before heartbeats existed has no
beat and reads as its tag says.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import time
from collections.abc import Mapping
from contextlib import closing
from pathlib import Path

from tracker import schema

__all__ = ["driver_gone", "live_state", "pid_alive", "stored_sweep_state"]


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists on this machine (a zombie counts as gone)."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process: it exists
        return True
    try:  # a killed child nobody has waited for yet is a zombie: dead for our purpose
        with open(f"/proc/{pid}/stat", encoding="ascii") as f:
            return f.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except OSError:
        return True


def driver_gone(tags: Mapping[str, str], now_s: float | None = None, host: str | None = None) -> bool:
    """Whether the driver named by a sweep's heartbeat tags is gone.

    Args:
        tags: the parent run's tags.
        now_s: the time to judge the beat's age against (default: now).
        host: this machine's hostname (default: ``socket.gethostname()``).

    Returns:
        True when the driver's host is this one and its pid is not alive, or its host is another and
        its last beat is older than ``schema.HEARTBEAT_STALE_S``; False without heartbeat tags.
    """
    beat = tags.get(schema.HEARTBEAT)
    if not beat:
        return False
    try:
        beat_s = float(beat)
        pid = int(tags.get(schema.DRIVER_PID) or 0)
    except ValueError:
        return False
    if tags.get(schema.DRIVER_HOST) == (host or socket.gethostname()):
        return not pid_alive(pid)
    return (now_s if now_s is not None else time.time()) - beat_s > schema.HEARTBEAT_STALE_S


def live_state(state: str, tags: Mapping[str, str]) -> str:
    """``state`` as readers show it: ``crashed`` for a ``running`` sweep whose driver is gone."""
    return "crashed" if state == "running" and driver_gone(tags) else state


def stored_sweep_state(db: Path, sweep: str) -> str | None:
    """The state tag of the latest sweep called ``sweep`` in the SQLite store ``db``, read with the
    standard library (no MLflow import: ``hpo run`` asks before deciding whether to start Ray at once);
    None when the file or the sweep is missing or the file is not an MLflow store."""
    if not db.is_file():
        return None
    query = (
        "SELECT state.value FROM tags AS name"
        " JOIN tags AS state ON state.run_uuid = name.run_uuid AND state.key = ?"
        " JOIN runs ON runs.run_uuid = name.run_uuid AND runs.lifecycle_stage = 'active'"
        " WHERE name.key = ? AND name.value = ? ORDER BY runs.start_time DESC LIMIT 1"
    )
    try:
        with closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)) as conn:
            row = conn.execute(query, (schema.SWEEP_STATE, schema.SWEEP, sweep)).fetchone()
    except sqlite3.Error:
        return None
    return None if row is None else str(row[0])
