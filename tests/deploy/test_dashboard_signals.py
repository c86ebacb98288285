"""``hpo dashboard`` and ``hpo ui`` take their servers with them: on SIGTERM or SIGHUP (forwarded), and on
SIGKILL (the children's parent-death signal). Checked in the process table (/proc) and on the ports."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import waiting
from waiting import free_port, http_body, port_open

ROOT = Path(__file__).resolve().parents[2]
WAIT_S = 60.0  # a bound on each wait below, not a claim about speed: the loops end as soon as they can

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; PDEATHSIG is Linux's")


def wait_until(condition: Callable[[], bool], what: str, hpo: Hpo | None = None) -> None:
    """``waiting.wait_until`` for ``condition``, bounded by WAIT_S; it fails at once when ``hpo`` exits
    first, with its output."""
    waiting.wait_until(condition, WAIT_S, interval_s=0.3, process=hpo.process if hpo is not None else None,
                       message=lambda: what if hpo is None else f"{what}; hpo's output:\n{hpo.output()}")


def _stat(pid: int) -> tuple[str, int] | None:
    """(state, parent pid) of ``pid`` from /proc, or None when it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = text[text.rindex(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return fields[0], int(fields[1])


def alive(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie left for a non-reaping init has ended)."""
    stat = _stat(pid)
    return stat is not None and stat[0] not in ("Z", "X")


def descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` in the process table."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(int(entry.name))) is not None and stat[0] != "Z":
            parents[int(entry.name)] = stat[1]
    found: set[int] = set()
    frontier = {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


class Hpo:
    """A running ``hpo`` command and every process below it seen so far (what cleanup must not leave).

    Its output goes to a file, not a pipe: a child that outlives it would hold a pipe open forever."""

    def __init__(self, process: subprocess.Popen[bytes], log: Path) -> None:
        self.process = process
        self.log = log
        self.children: set[int] = set()

    def serving(self, urls: list[str]) -> set[int]:
        """Wait until every URL answers; returns (and remembers) the processes below hpo then."""
        wait_until(lambda: all(http_body(u) is not None for u in urls), f"{', '.join(urls)} to answer", self)
        self.children = descendants(self.process.pid)
        assert self.children, "hpo started no child process"
        return self.children

    def stop(self, sig: signal.Signals) -> int:
        """Send ``sig`` to hpo and wait for it to exit; returns its exit code."""
        self.process.send_signal(sig)
        return self.process.wait(timeout=WAIT_S)

    def output(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@contextmanager
def started(args: list[str], tmp_path: Path) -> Iterator[Hpo]:
    """``hpo ARGS`` as a real process; afterwards nothing it started is left, whatever the test saw."""
    env = {**os.environ, "HPO_HOME": str(tmp_path / ".hpo"), "PYTHONPATH": str(ROOT)}
    env.pop("MLFLOW_TRACKING_URI", None)
    log = tmp_path / "hpo.log"
    with log.open("wb") as out:
        process = subprocess.Popen([sys.executable, "-m", "hpo.cli", *args], cwd=tmp_path, env=env,
                                   stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    hpo = Hpo(process, log)
    try:
        yield hpo
    finally:
        if process.poll() is None:
            hpo.children |= descendants(process.pid)
            process.kill()
        process.wait()
        for pid in hpo.children:  # only processes this test started (a failing test leaves orphans)
            if alive(pid):
                os.kill(pid, signal.SIGKILL)


def _assert_all_gone(children: set[int], ports: list[int]) -> None:
    wait_until(lambda: not any(alive(pid) for pid in children), f"children {sorted(children)} to end")
    wait_until(lambda: not any(port_open(p) for p in ports), f"ports {ports} to close")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP, signal.SIGINT], ids=["SIGTERM", "SIGHUP", "SIGINT"])
def test_dashboard_stop_signal_stops_streamlit(tmp_path: Path, sig: signal.Signals) -> None:
    port = free_port()
    with started(["dashboard", "--port", str(port)], tmp_path) as hpo:
        children = hpo.serving([f"http://127.0.0.1:{port}/_stcore/health"])
        assert hpo.stop(sig) == 0, hpo.output()
        _assert_all_gone(children, [port])


def test_dashboard_killed_takes_streamlit_along(tmp_path: Path) -> None:
    port = free_port()
    with started(["dashboard", "--port", str(port)], tmp_path) as hpo:
        children = hpo.serving([f"http://127.0.0.1:{port}/_stcore/health"])
        hpo.stop(signal.SIGKILL)  # no handler runs: only the parent-death signal can stop Streamlit
        _assert_all_gone(children, [port])


@pytest.mark.parametrize("sig", [signal.SIGHUP, signal.SIGKILL], ids=["SIGHUP", "SIGKILL"])
def test_ui_hangup_or_kill_stops_both_servers(tmp_path: Path, sig: signal.Signals) -> None:
    mlflow_port, dashboard_port = free_port(), free_port()
    args = ["ui", "--mlflow-port", str(mlflow_port), "--port", str(dashboard_port)]
    with started(args, tmp_path) as hpo:
        urls = [f"http://127.0.0.1:{mlflow_port}/health", f"http://127.0.0.1:{dashboard_port}/_stcore/health"]
        children = hpo.serving(urls)  # mlflow server, its uvicorn worker, streamlit
        code = hpo.stop(sig)
        if sig == signal.SIGHUP:
            assert code == 0, hpo.output()
        _assert_all_gone(children, [mlflow_port, dashboard_port])
