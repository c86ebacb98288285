"""Fixtures shared by every test folder: the ``hpo`` console script in a clean environment, and one
real tiny sweep (Ray + MLflow SQLite) that several test modules read.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest
from sweep_reads import SMALL_SWEEP_YAML


def hpo_script() -> str:
    """The ``hpo`` console script of the interpreter running the tests."""
    beside = Path(sys.executable).with_name("hpo")
    found = str(beside) if beside.exists() else shutil.which("hpo")
    if found is None:
        raise RuntimeError("the hpo console script is not installed; run `pip install -e .`")
    return found


def clean_env(home: Path | None) -> dict[str, str]:
    """This process's environment without a tracking store or Ray cluster chosen from outside."""
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "HPO_HOME")}
    if home is not None:
        env["HPO_HOME"] = str(home)
    return env


RunHpo = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture(scope="session")
def run_hpo() -> RunHpo:
    """``run_hpo(args, cwd, home=None, timeout_s=240)``: the console script in ``cwd``, output captured."""

    def run(args: Sequence[str], cwd: Path, home: Path | None = None, timeout_s: float = 240) -> Any:
        return subprocess.run(
            [hpo_script(), *args], cwd=cwd, env=clean_env(home), capture_output=True, text=True, timeout=timeout_s
        )

    return run


@dataclass(frozen=True)
class SweepRun:
    """One ``hpo run --json`` in its own folder: what it printed and where it stored the sweep."""

    folder: Path
    home: Path
    sweep_file: Path
    returncode: int
    stdout: str
    stderr: str

    @property
    def tracking_uri(self) -> str:
        return f"sqlite:///{self.home / 'mlflow.db'}"

    def result(self) -> dict[str, Any]:
        """The JSON document on stdout; fails the test with stderr when there is none."""
        try:
            return json.loads(self.stdout)  # type: ignore[no-any-return]
        except json.JSONDecodeError:
            pytest.fail(f"hpo run printed no JSON document (exit {self.returncode}); stderr:\n{self.stderr[-3000:]}")


def run_sweep_file(run_hpo: RunHpo, folder: Path, text: str, *extra: str) -> SweepRun:
    """Write ``text`` to ``folder/sweep.yaml`` and run it with ``hpo run --json`` there."""
    folder.mkdir(parents=True, exist_ok=True)
    sweep_file = folder / "sweep.yaml"
    sweep_file.write_text(text, encoding="utf-8")
    home = folder / "hpo_home"
    done = run_hpo(["run", str(sweep_file), "--json", *extra], cwd=folder, home=home)
    return SweepRun(folder, home, sweep_file, done.returncode, done.stdout, done.stderr)


@pytest.fixture(scope="session")
def sweep_runner(run_hpo: RunHpo) -> Callable[..., SweepRun]:
    """``sweep_runner(folder, yaml_text, *extra_args)``: ``hpo run --json`` of that sweep in ``folder``."""
    return lambda folder, text, *extra: run_sweep_file(run_hpo, folder, text, *extra)


@pytest.fixture(scope="session")
def small_sweep_run(run_hpo: RunHpo, tmp_path_factory: pytest.TempPathFactory) -> SweepRun:
    """The real tiny sweep of ``SMALL_SWEEP_YAML``, run once per test session (``--verbose``: its
    start-up phases are on stderr)."""
    return run_sweep_file(run_hpo, tmp_path_factory.mktemp("small_sweep"), SMALL_SWEEP_YAML, "--verbose")


class SmallSweep(NamedTuple):
    tracking_uri: str
    parent_run_id: str
    result_json: dict[str, Any]


@pytest.fixture(scope="session")
def small_sweep_store(small_sweep_run: SweepRun) -> SmallSweep:
    """``(tracking_uri, parent_run_id, result_json)`` of a real tiny sweep of 6 digits trials: 1 finished
    (adam lr 0.05, val_accuracy ~0.88), 4 stopped early by ASHA at epoch 2 or 4, 1 FAILED (diverged at
    epoch 1). Read it with ``tracker.queries`` or ``MlflowClient``."""
    if small_sweep_run.returncode != 0:
        pytest.fail(f"the small sweep exited {small_sweep_run.returncode}:\n{small_sweep_run.stderr[-3000:]}")
    result = small_sweep_run.result()
    return SmallSweep(small_sweep_run.tracking_uri, result["parent_run_id"], result)
