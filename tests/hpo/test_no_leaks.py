"""No leaks (issue 9.4): when ``hpo run`` dies by any signal, the local Ray it started goes with it.

A real ``hpo run`` is started in its own session; once a trial has reported, the test records every
process of that sweep's Ray from the process table (the driver's session, its descendants, and
whatever names its Ray session folder), signals the driver by its pid, and checks that none of them
outlives it by more than a few seconds. On the old code a SIGKILL-ed driver left the raylet's agents
alive for 20-60 s.
"""

from __future__ import annotations

import os
import re
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from waiting import wait_until

from hpo.ray_local import MARKER, Watchdog

# Trials that report every half second for a long time: both are running when the driver is signalled.
STEADY = """\
import time


def train(config, report):
    for epoch in range(1, config["epochs"] + 1):
        time.sleep(0.5)
        report({"epoch": epoch, "val_loss": 1.0 / epoch})
"""
STEADY_YAML = """\
name: leaks
method: grid
metric: {name: val_loss, goal: minimize}
budget: {max_concurrent: 2}
trainer: {function: "steady.train:train", epochs: 1000, reports: [val_loss]}
parameters:
  tag: {values: [a, b]}
"""
ROOT = Path(__file__).resolve().parents[2]
GONE_WITHIN_S = 10  # "a few seconds": Ray's own agents used to linger 20-60 s after a SIGKILL-ed driver


def _stat(pid: int) -> tuple[int, int, int, str] | None:
    """(ppid, session id, start time, state) of a live process, or None."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2:].split()
    if fields[0] == "Z":
        return None
    return int(fields[1]), int(fields[3]), int(fields[19]), fields[0]


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def sweep_ray_processes(driver: int) -> dict[int, int]:
    """pid -> start time of every process of the driver's Ray: in its session, below it, or naming its
    Ray session folder (``.../session_<date>_<driver pid>``)."""
    table = {int(p.name): s for p in Path("/proc").iterdir() if p.name.isdigit() and (s := _stat(int(p.name)))}
    session_dir = re.compile(rf"session_[0-9_\-]+_{driver}\b")
    found = {pid for pid, s in table.items() if s[1] == driver or session_dir.search(_cmdline(pid))}
    grew = True
    while grew:
        grew = False
        for pid, s in table.items():
            if pid not in found and (s[0] in found or s[0] == driver):
                found.add(pid)
                grew = True
    found.discard(driver)
    return {pid: table[pid][2] for pid in found}


def alive(processes: dict[int, int]) -> dict[int, str]:
    """The ones still running (same pid, same start time), with their command lines."""
    out = {}
    for pid, started in processes.items():
        stat = _stat(pid)
        if stat is not None and stat[2] == started:
            out[pid] = _cmdline(pid)[:120]
    return out


def _reported(db: Path) -> bool:
    if not db.exists():
        return False
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1) as con:
            return bool(con.execute("SELECT COUNT(*) FROM metrics WHERE key = 'val_loss'").fetchone()[0])
    except sqlite3.Error:  # the schema is still being created
        return False


def _start_driver(folder: Path) -> subprocess.Popen[bytes]:
    """``hpo run`` of the steady sweep in ``folder``, in its own session, output in ``folder/hpo.log``."""
    package = folder / "steady"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "train.py").write_text(STEADY)
    (folder / "sweep.yaml").write_text(STEADY_YAML)
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS")}
    env.update(HPO_HOME=str(folder / "hpo_home"), PYTHONPATH=str(ROOT))
    with (folder / "hpo.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "hpo.cli", "run", "sweep.yaml"], cwd=folder, env=env, stdout=log, stderr=log,
            start_new_session=True,  # its own session: the test can tell its processes from everyone else's
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # Ctrl-C as at a terminal
        )


SIGNALS = (signal.SIGKILL, signal.SIGTERM, signal.SIGINT)


@pytest.mark.slow
def test_the_local_ray_dies_with_its_driver_whatever_signal_ends_it(tmp_path: Path) -> None:
    # three sweeps side by side, one per signal: one Ray start-up's wait instead of three
    folders = {signum: tmp_path / signum.name for signum in SIGNALS}
    drivers = {signum: _start_driver(folder) for signum, folder in folders.items()}
    recorded: dict[signal.Signals, dict[int, int]] = {}
    try:
        for signum, driver in drivers.items():
            log = folders[signum] / "hpo.log"
            wait_until(lambda: _reported(folders[signum] / "hpo_home" / "mlflow.db"), 240, interval_s=0.5,  # noqa: B023
                       process=driver, message=lambda: f"a trial reports; the log:\n{log.read_text()}")  # noqa: B023
        for signum, driver in drivers.items():
            recorded[signum] = sweep_ray_processes(driver.pid)
            commands = " ".join(alive(recorded[signum]).values())
            assert "raylet" in commands and "ray::" in commands, commands  # the raylet and what it started
        for signum, driver in drivers.items():
            os.kill(driver.pid, signum)
        # SIGKILL and SIGTERM end their drivers at once; Ctrl-C first closes the sweep's runs
        for group in ((signal.SIGKILL, signal.SIGTERM), (signal.SIGINT,)):
            for signum in group:
                drivers[signum].wait(timeout=120)

            def left(group: tuple[signal.Signals, ...] = group) -> dict[str, dict[int, str]]:
                return {signum.name: found for signum in group if (found := alive(recorded[signum]))}

            wait_until(lambda: not left(), GONE_WITHIN_S, interval_s=0.2,  # noqa: B023
                       message=lambda: f"Ray processes outlive their driver: {left()}")  # noqa: B023
    finally:
        for processes in recorded.values():  # leave nothing to the next test, even when this one failed
            for pid in alive(processes):
                os.kill(pid, signal.SIGKILL)
        for driver in drivers.values():
            if driver.poll() is None:
                driver.kill()
                driver.wait()
    for signum, driver in drivers.items():
        log_tail = (folders[signum] / "hpo.log").read_text()[-3000:]
        if signum == signal.SIGINT:  # Ctrl-C: the sweep is closed as interrupted, then Ray is shut down
            assert driver.returncode == 130, log_tail
        elif signum == signal.SIGKILL:
            assert driver.returncode == -signal.SIGKILL, log_tail
        else:  # SIGTERM: Ray's own handler in the driver aborts it (SIGABRT) or exits 1, depending on timing
            assert driver.returncode != 0, log_tail


def test_only_processes_started_while_marking_carry_the_token() -> None:
    """The token marks ``ray.init``'s children only: what the driver starts later is not the sweep's Ray."""
    watchdog = Watchdog.start()
    try:
        with watchdog.marking():
            inside = subprocess.run(["env"], capture_output=True, text=True, check=True).stdout
        outside = subprocess.run(["env"], capture_output=True, text=True, check=True).stdout
    finally:
        watchdog.close()
    assert f"{MARKER}={watchdog.token}" in inside.splitlines()
    assert MARKER not in outside
    assert watchdog.process is not None and watchdog.process.returncode == 0  # the closed pipe ended it


# A driver without Ray: it starts the watchdog, then (marked) a shell whose child drops the token from
# its environment, then (unmarked) a bystander; prints the pids and waits to be killed.
DRIVER = """\
import os, subprocess, sys, time
from hpo.ray_local import MARKER, Watchdog

watchdog = Watchdog.start()
with watchdog.marking():
    shell = subprocess.Popen(["sh", "-c", f"env -u {MARKER} sleep 1000 & wait"])
bystander = subprocess.Popen(["sleep", "1000"], start_new_session=True)
time.sleep(0.5)
print(shell.pid, bystander.pid, flush=True)
time.sleep(1000)
"""


@pytest.mark.parametrize("signum", [signal.SIGKILL, signal.SIGTERM], ids=lambda s: s.name)
def test_the_watchdog_ends_marked_processes_and_their_children_when_the_driver_dies(
    tmp_path: Path, signum: signal.Signals
) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    driver = subprocess.Popen([sys.executable, "-c", DRIVER], stdout=subprocess.PIPE, text=True, env=env,
                              start_new_session=True)
    assert driver.stdout is not None
    shell, bystander = (int(pid) for pid in driver.stdout.readline().split())
    ours: dict[int, int] = {}
    try:
        def shell_and_child() -> dict[int, int] | None:
            found = sweep_ray_processes(driver.pid)  # the driver's session and descendants, watchdog included
            return found if any((_stat(pid) or (0,))[0] == shell for pid in found) else None

        ours = wait_until(shell_and_child, 30, message="the driver's shell and its child are running")
        sleeper = next(pid for pid in ours if (_stat(pid) or (0,))[0] == shell)
        assert MARKER not in Path(f"/proc/{sleeper}/environ").read_text(errors="replace")  # found as a child only
        os.kill(driver.pid, signum)
        driver.wait(timeout=30)
        mine = {pid: ours[pid] for pid in ours if pid != bystander}
        wait_until(lambda: not alive(mine), GONE_WITHIN_S, message=lambda: f"alive: {alive(mine)}")
        assert alive({bystander: ours[bystander]}), "an unmarked process that is not Ray's was killed"
    finally:
        for pid in alive(ours):
            os.kill(pid, signal.SIGKILL)
        driver.kill()
        driver.wait()
