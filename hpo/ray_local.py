"""The local Ray a sweep starts dies with its driver, whatever kills the driver (SIGKILL included).

Ray starts its head processes (GCS, raylet, monitors) with ``PR_SET_PDEATHSIG``, so they die with the
driver; but what the raylet starts (the dashboard and runtime-env agents, trial workers and their own
children) is orphaned: workers notice within seconds, the agents poll for the raylet's death and then
try to report it to the dead GCS, and outlive a ``kill -9``-ed driver by 20-60 s. So the driver starts
a :class:`Watchdog` first: a tiny stdlib-only process in its own session (a terminal's Ctrl-C or hang-up
does not reach it, and a signal to the driver's process group spares it) that holds a pipe from the
driver. While the driver lives, it records this sweep's Ray processes once a second; when the pipe
closes (the driver died, or ended the sweep after ``ray.shutdown()``), it SIGKILLs every one of them
still alive, and any they started since.

Which processes are this sweep's: those that carry a random token in their environment (the driver
sets it only while ``ray.init`` runs, so the head processes inherit it and, from the raylet, so do the
workers), and every descendant of those (the agents' environment is overwritten by their process
title, so they are found as the raylet's children, and remembered by pid and start time across
the raylet's death). Nothing is ever matched by name, and a pid is only signalled while its start time
is the one recorded, so a reused pid is never hit. A cluster given by ``ray.address`` is not ours:
the runner starts no watchdog for it. Linux only (it reads ``/proc``); elsewhere only Ray's own
fate-sharing applies.

This file also runs as the watchdog's script (``python -I ray_local.py DRIVER_PID TOKEN``): it imports
nothing but the standard library.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

MARKER = "HPO_RAY_OWNER"  # environment variable naming the sweep's token in its Ray processes
SCAN_INTERVAL_S = 1.0  # how often the watchdog records the sweep's Ray processes while the driver lives
_END_ROUNDS = 50  # rounds of "find and kill" after the driver is gone (0.1 s apart): a fork mid-kill is caught
_PROC = Path("/proc")


class Watchdog:
    """The driver's side of the watchdog: its process, the token it looks for, and the pipe it holds."""

    def __init__(self, process: subprocess.Popen[bytes] | None, token: str) -> None:
        self.process = process
        self.token = token

    @classmethod
    def start(cls, *, local: bool = True) -> Watchdog:
        """Start the watchdog for the local Ray this process is about to start.

        A no-op watchdog when ``local`` is false (a cluster's Ray is not ours to end) or ``/proc`` is missing.
        """
        token = os.urandom(8).hex()
        if not local or not (_PROC / str(os.getpid()) / "stat").exists():
            return cls(None, token)
        process = subprocess.Popen(  # noqa: S603 - our own script, run by our own interpreter
            [sys.executable, "-I", str(Path(__file__).resolve()), str(os.getpid()), token],
            stdin=subprocess.PIPE,  # the driver keeps the only write end: it closes when the driver dies
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
        )
        return cls(process, token)

    @contextmanager
    def marking(self) -> Iterator[None]:
        """Inside: processes this one starts (``ray.init``'s head processes) carry the token. When the
        block raises (Ray did not start, or was shut down again), the watchdog is closed: nothing to watch."""
        if self.process is None:
            yield
            return
        before = os.environ.get(MARKER)
        os.environ[MARKER] = self.token
        try:
            yield
        except BaseException:
            self.close()
            raise
        finally:  # later children of the driver (git, a test's own servers) are not the sweep's Ray
            if before is None:
                os.environ.pop(MARKER, None)
            else:
                os.environ[MARKER] = before

    def close(self, timeout_s: float = 10.0) -> None:
        """After ``ray.shutdown()``: let the watchdog end what is left of this sweep's Ray, and wait for it."""
        if self.process is None:
            return
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:  # it ends on its own; the sweep's result must not wait longer
            pass


# -- the watchdog process --------------------------------------------------------------------------
def _stat(pid: int) -> tuple[int, int, int, str] | None:
    """(ppid, pgid, start time in clock ticks, state) of ``pid``, or None when it is gone."""
    try:
        text = (_PROC / str(pid) / "stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()  # the name in parentheses may hold spaces
    return int(fields[1]), int(fields[2]), int(fields[19]), fields[0]


def _marked(pid: int, marker: bytes) -> bool:
    try:
        return marker in (_PROC / str(pid) / "environ").read_bytes().split(b"\0")
    except OSError:  # another user's process, or gone
        return False


def sweep_processes(token: str, known: dict[int, int], exclude: set[int]) -> dict[int, int]:
    """This sweep's live Ray processes, pid -> start time: those carrying ``token``, those in ``known``
    still alive with the same start time, and every descendant of either."""
    marker = f"{MARKER}={token}".encode()
    table: dict[int, tuple[int, int, int, str]] = {}
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            stat = _stat(int(entry.name))
            if stat is not None and stat[3] != "Z":  # a zombie is dead already
                table[int(entry.name)] = stat
    found = {
        pid: stat[2] for pid, stat in table.items()
        if pid not in exclude and (known.get(pid) == stat[2] or (pid not in known and _marked(pid, marker)))
    }
    grew = True
    while grew:  # descendants, to any depth
        grew = False
        for pid, stat in table.items():
            if pid not in found and pid not in exclude and stat[0] in found:
                found[pid] = stat[2]
                grew = True
    return found


def _kill(processes: dict[int, int]) -> None:
    for pid, started in processes.items():
        stat = _stat(pid)
        if stat is None or stat[2] != started:
            continue
        try:
            if stat[1] == pid:  # a worker leads its own group: its forked helpers go with it
                os.killpg(pid, signal.SIGKILL)
            else:
                os.kill(pid, signal.SIGKILL)
        except OSError:
            continue


class _Terminated(Exception):
    """SIGTERM reached the watchdog (a logout, a shutdown): end the sweep's Ray now, then exit."""


def _terminated(signum: int, frame: object) -> None:
    raise _Terminated


def watch(driver_pid: int, token: str) -> None:
    """Record the sweep's Ray processes while the driver lives; kill them once it is gone."""
    for name in ("SIGINT", "SIGHUP", "SIGQUIT"):  # the terminal's signals are for the driver
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _terminated)
    driver = _stat(driver_pid)
    exclude = {os.getpid(), driver_pid}
    known: dict[int, int] = {}
    try:
        while driver is not None:
            readable, _, _ = select.select([sys.stdin.fileno()], [], [], SCAN_INTERVAL_S)
            if readable and not os.read(sys.stdin.fileno(), 4096):
                break  # the pipe closed: the driver died or is done with Ray
            now = _stat(driver_pid)
            if now is None or now[2] != driver[2]:  # gone, though a forked child may still hold the pipe
                break
            known = sweep_processes(token, known, exclude)
    except _Terminated:
        pass
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # the ending below must not be cut short
    for _ in range(_END_ROUNDS):
        known = sweep_processes(token, known, exclude)
        if not known:
            return
        _kill(known)
        time.sleep(0.1)


if __name__ == "__main__":
    watch(int(sys.argv[1]), sys.argv[2])
