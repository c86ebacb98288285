"""Trials on DDP workers (``workers: 2``), trial processes that die, and trials the cluster cannot hold."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sweep_reads import client, stored_trials

from hpo.cluster import check_cluster_fits
from hpo.errors import ConfigError
from hpo.loading import validate
from tracker import schema

DDP_YAML = """\
name: ddp
method: grid
metric: {name: val_loss, goal: minimize}
trainer: {task: digits, epochs: 2, options: {hidden: 16, train_fraction: 0.3, dropout: 0.0}}
resources: {cpu: 0.5}
workers: 2
parameters:
  lr: {values: [0.05]}
"""

# Trial `kill: 1` SIGKILLs its own process; with `once`, only on its first attempt (a marker file remembers).
KILLER = """\
import os
import signal
from pathlib import Path


def train(config, report):
    marker = Path(__file__).with_name("killed_once")
    if config["kill"] == 1 and not (config["once"] and marker.exists()):
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    for epoch in range(1, config["epochs"] + 1):
        report({"epoch": epoch, "val_loss": 1.0 / (epoch + config["kill"])})
"""
KILLER_YAML = """\
name: faults
method: grid
metric: {name: val_loss, goal: minimize}
budget: {max_concurrent: 1, max_failures: %d}
trainer: {function: "killer.train:train", epochs: 2, reports: [val_loss]}
parameters:
  kill: {values: [0, 1, 2]}
  once: %s
"""


@pytest.mark.slow
def test_two_ddp_workers_finish_a_trial_with_one_point_per_epoch(sweep_runner, tmp_path: Path) -> None:
    run = sweep_runner(tmp_path, DDP_YAML)
    assert run.returncode == 0, run.stderr[-3000:]
    parent = run.result()["parent_run_id"]
    [trial] = stored_trials(run.tracking_uri, parent)
    assert trial.status == "FINISHED"
    for name in ("train_loss", "val_loss", "train_accuracy", "val_accuracy"):
        assert [step for step, _ in trial.points[name]] == [1, 2], name
    assert len(trial.tags[schema.NODE_ID]) > 20  # a Ray node id (hex)
    artifacts = [a.path for a in client(run.tracking_uri).list_artifacts(parent, schema.BEST_CHECKPOINT_DIR)]
    # rank 0's checkpoint reached the sweep, with its per-layer training signals beside the weights
    assert artifacts == [f"{schema.BEST_CHECKPOINT_DIR}/{name}" for name in ("model.pt", "training_signals.json")]
    test = run.result()["best"]["test"]  # the loop's own checkpoint format: scored on test like any winner
    assert set(test) >= {"test_loss", "test_accuracy"} and trial.metrics["test_loss"] == test["test_loss"]


@pytest.mark.slow
@pytest.mark.parametrize(("max_failures", "once", "killed_status"), [(0, "false", "FAILED"), (1, "true", "FINISHED")])
def test_a_killed_trial_process_fails_or_retries_that_trial_and_the_sweep_goes_on(
    sweep_runner, tmp_path: Path, max_failures: int, once: str, killed_status: str
) -> None:
    package = tmp_path / "killer"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "train.py").write_text(KILLER)
    run = sweep_runner(tmp_path, KILLER_YAML % (max_failures, once))
    assert run.returncode == 0, run.stderr[-3000:]
    trials = stored_trials(run.tracking_uri, run.result()["parent_run_id"])
    assert len(trials) == 3  # a retried trial keeps its one run
    status = {t.params["kill"]: t.status for t in trials}
    assert status == {"0": "FINISHED", "1": killed_status, "2": "FINISHED"}
    killed = next(t for t in trials if t.params["kill"] == "1")
    if killed_status == "FAILED":
        assert "died" in killed.tags[schema.ERROR].lower() or "actor" in killed.tags[schema.ERROR].lower(), killed.tags
    else:
        assert [step for step, _ in killed.points["val_loss"]] == [1, 2]
    assert (package / "killed_once").exists()


SLOW = """\
import time


def train(config, report):
    for epoch in range(1, config["epochs"] + 1):
        time.sleep(0.5)
        report({"epoch": epoch, "val_loss": 1.0 / epoch})
"""
SLOW_YAML = """\
name: budget
method: grid
metric: {name: val_loss, goal: minimize}
budget: {max_concurrent: 1, time_limit_s: 12}
trainer: {function: "slow.train:train", epochs: 100, reports: [val_loss]}
parameters:
  tag: {values: [a, b]}
"""


@pytest.mark.slow
def test_the_time_limit_stops_the_running_trial_and_starts_no_other(sweep_runner, tmp_path: Path) -> None:
    package = tmp_path / "slow"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "train.py").write_text(SLOW)
    run = sweep_runner(tmp_path, SLOW_YAML)
    assert run.returncode == 0, run.stderr[-3000:]
    trials = stored_trials(run.tracking_uri, run.result()["parent_run_id"])
    assert [t.status for t in trials] == ["KILLED"]  # the other grid point never started
    cut = trials[0]
    assert cut.tags[schema.EARLY_STOPPED] == "true"
    assert cut.tags[schema.STOPPED_BY] == "time_limit"
    assert 1 <= len(cut.points["val_loss"]) < 100


def _config(**changes: object) -> object:
    raw = yaml.safe_load(DDP_YAML)
    raw.update(changes)
    return validate(raw)


def test_trials_larger_than_the_cluster_are_refused_with_the_numbers() -> None:
    two_nodes = [{"CPU": 2.0}, {"CPU": 2.0, "GPU": 1.0}]
    cluster = {"CPU": 4.0, "GPU": 1.0}
    check_cluster_fits(_config(workers=2, resources={"cpu": 1}), cluster, two_nodes)  # 2.01 of 4 CPUs
    with pytest.raises(ConfigError, match=r"resources: a trial needs workers: 4 x resources \{cpu: 1, gpu: 0\} = "
                                          r"4.01 CPUs \+ 0.01 for the trial's coordinator and 0 GPUs, but the Ray "
                                          r"cluster has 4 CPUs and 1 GPUs; lower workers"):
        check_cluster_fits(_config(workers=4, resources={"cpu": 1}), cluster, two_nodes)
    with pytest.raises(ConfigError, match=r"= 1 CPUs and 2 GPUs, but the Ray cluster has 4 CPUs and 1 GPUs"):
        check_cluster_fits(_config(workers=1, resources={"cpu": 1, "gpu": 2}), cluster, two_nodes)
    with pytest.raises(ConfigError, match=r"one trial needs resources \{cpu: 3, gpu: 0\}, but the largest Ray "
                                          r"node has 2 CPUs and 1 GPUs"):
        check_cluster_fits(_config(workers=1, resources={"cpu": 3}), cluster, two_nodes)
    with pytest.raises(ConfigError, match=r"one worker needs resources \{cpu: 5, gpu: 0\}, but the largest Ray node "
                                          r"has 4 CPUs"):
        check_cluster_fits(_config(workers=2, resources={"cpu": 5}), {"CPU": 16.0}, [{"CPU": 4.0}] * 4)


def test_workers_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"workers: Input should be greater than or equal to 1; got 0"):
        _config(workers=0)
    with pytest.raises(ConfigError, match=r"workers: 2 runs the built-in loop on DDP workers, but trainer.function"):
        _config(trainer={"function": "killer.train:train"})
    with pytest.raises(ConfigError, match=r"budget.max_failures: Input should be greater than or equal to 0"):
        _config(budget={"max_failures": -1})


@pytest.mark.slow
def test_more_workers_than_cpus_exits_2_naming_the_numbers(sweep_runner, tmp_path: Path) -> None:
    run = sweep_runner(tmp_path, DDP_YAML.replace("workers: 2", "workers: 64"))
    assert run.returncode == 2, run.stderr[-3000:]
    assert "workers: 64 x resources {cpu: 0.5, gpu: 0} = 32.01 CPUs" in run.stderr


def test_a_trial_larger_than_this_machine_exits_2_and_creates_nothing(tmp_path: Path) -> None:
    sweep = tmp_path / "big.yaml"
    sweep.write_text("name: big\ntrainer: {task: digits, epochs: 1}\nresources: {cpu: 512}\n"
                     "parameters: {lr: {values: [0.01]}}\n", encoding="utf-8")
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if k != "MLFLOW_TRACKING_URI"}
    done = subprocess.run([sys.executable, "-m", "hpo.cli", "run", str(sweep)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=120, env={**env, "HPO_HOME": str(home)})
    assert done.returncode == 2, done.stderr
    assert "= 512 CPUs" in done.stderr and "resources" in done.stderr
    assert not home.exists()
