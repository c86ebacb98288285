"""``hpo run --verbose`` prints where the start-up seconds go; the clock behind it."""

from __future__ import annotations

import io
import os
import re
import subprocess
import sys
import time

from hpo.startup import PhaseClock, launched_at

PHASE_LINE = re.compile(r"^\[start-up\]\s+(\d+\.\d\d) s  (.+?)(?: \(.*\))?$")
IN_ORDER = ["sweep loaded", "driver imported", "ray started", "sweep run created", "tuner built",
            "first trial started", "first epoch reported"]  # fmt: skip


def test_verbose_prints_each_start_up_phase_once_in_order(small_sweep_run) -> None:
    assert small_sweep_run.returncode == 0, small_sweep_run.stderr[-3000:]
    small_sweep_run.result()  # stdout still holds the one JSON document: the phases go to stderr
    phases = [m.groups() for m in map(PHASE_LINE.match, small_sweep_run.stderr.splitlines()) if m]
    names = [name for _, name in phases]
    assert sorted(names) == sorted({*IN_ORDER, "store open", "tune and optuna imported"}), names
    at = {name: float(seconds) for seconds, name in phases}
    chain = [at[name] for name in IN_ORDER]
    assert chain == sorted(chain)  # each phase ends after the one it waits for
    assert at["store open"] <= at["sweep run created"]  # the store opened while Ray started, before the run
    assert 0 < at["sweep loaded"] < at["first epoch reported"]


def test_the_clock_counts_from_the_process_launch_and_marks_a_phase_once() -> None:
    # this process's launch, not the machine's boot: a child started now was launched after us, not before
    spawned = time.time()
    child = subprocess.run([sys.executable, "-c", "from hpo.startup import launched_at; print(launched_at())"],
                           capture_output=True, text=True, check=True)
    resolution_s = 2 / os.sysconf("SC_CLK_TCK") + 0.01  # /proc's clock ticks and /proc/uptime's hundredths
    assert launched_at() < spawned - resolution_s <= float(child.stdout) + 2 * resolution_s
    stream = io.StringIO()
    clock = PhaseClock(verbose=True, stream=stream)
    clock.mark("ray started", "local")
    clock.mark("ray started")  # a second end of the same phase changes nothing
    assert [name for name, _ in clock.phases] == ["ray started"]
    assert clock.seconds("ray started") is not None and clock.seconds("tuner built") is None
    assert re.fullmatch(r"\[start-up\]\s+\d+\.\d\d s  ray started \(local\)\n", stream.getvalue())
    silent = io.StringIO()
    PhaseClock(stream=silent).mark("ray started")
    assert silent.getvalue() == ""
