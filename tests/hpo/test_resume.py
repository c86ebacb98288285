"""Sweeps survive crashes (issue 9): resume exactly once, no ghosts, one live driver per sweep.

The chaos tests kill a real ``hpo run`` (its whole process group, with SIGKILL or SIGINT) at chosen
moments of one sweep, resume it, and read the SQLite store back like any user would. The fast tests
build a sweep's stored state by hand where running one adds nothing.
"""

from __future__ import annotations

import fcntl
import os
import re
import signal
import socket
import sqlite3
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from waiting import WaitTimeout, wait_until

from tracker import schema

SWEEP = """\
name: chaos
method: random
metric: {{name: val_accuracy, goal: maximize}}
budget: {{trials: {trials}, max_concurrent: 2}}
seed: 3
trainer: {{task: digits, epochs: {epochs}, options: {{hidden: 16, train_fraction: 0.3}}}}
parameters:
  lr: {{min: 0.001, max: 0.3, distribution: log_uniform}}
  optimizer: {{values: [sgd, adam]}}
"""


SLOW_EPOCHS = 12  # for the kill tests: trials long enough to be in flight when the store shows one ended


def hpo_script() -> str:
    """The ``hpo`` console script beside this interpreter (Popen needs it; the root conftest runs it blocking)."""
    import shutil
    import sys

    beside = Path(sys.executable).with_name("hpo")
    return str(beside) if beside.exists() else str(shutil.which("hpo"))


def clean_env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS", "HPO_HOME")}
    env["HPO_HOME"] = str(home)
    return env


def _client(home: Path) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=f"sqlite:///{home / 'mlflow.db'}")


def _parents(home: Path) -> list[Any]:
    if not (home / "mlflow.db").exists():
        return []
    mlflow = _client(home)
    experiments = [e.experiment_id for e in mlflow.search_experiments()]
    if not experiments:
        return []
    runs = mlflow.search_runs(experiments, filter_string=f"tags.`{schema.RUN_KIND}` = 'sweep'", max_results=100)
    return list(runs)


def _trials(home: Path, parent_id: str) -> list[Any]:
    mlflow = _client(home)
    parent = mlflow.get_run(parent_id)
    runs = mlflow.search_runs([parent.info.experiment_id],
                              filter_string=f"tags.`{schema.PARENT_RUN_ID}` = '{parent_id}'", max_results=1000)
    return [r for r in runs if r.data.tags.get(schema.RUN_KIND) == schema.KIND_TRIAL]


def _ended(home: Path) -> int:
    """Trial runs that ended, read with plain SQL while the driver runs: an MlflowClient here would run
    MLflow's schema migration on a store the driver is still creating, and the two would race."""
    db = home / "mlflow.db"
    if not db.exists():
        return 0
    query = f"""
        SELECT count(*) FROM runs r JOIN tags k ON k.run_uuid = r.run_uuid
        WHERE k.key = '{schema.RUN_KIND}' AND k.value = '{schema.KIND_TRIAL}' AND (r.status IN ('FINISHED', 'FAILED')
          OR EXISTS (SELECT 1 FROM tags e WHERE e.run_uuid = r.run_uuid
                     AND e.key = '{schema.EARLY_STOPPED}' AND e.value = 'true'))"""
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5) as connection:
            return int(connection.execute(query).fetchone()[0])
    except sqlite3.Error:  # tables not created yet, or the file is mid-migration
        return 0


def _snapshot(home: Path) -> dict[str, dict[str, Any]]:
    """Ended trials by run id: number, params and every metric's full history."""
    mlflow = _client(home)
    out = {}
    for run in _trials(home, _parents(home)[0].info.run_id):
        if run.info.status not in ("FINISHED", "FAILED"):
            continue
        # test_* are the winner's test-split scores, logged once when the sweep ends (after its last resume)
        history = {k: [(m.step, m.value) for m in mlflow.get_metric_history(run.info.run_id, k)]
                   for k in run.data.metrics if not k.startswith(schema.TEST_PREFIX)}
        out[run.info.run_id] = {"number": run.data.tags[schema.TRIAL_NUMBER], "params": dict(run.data.params),
                                "history": history}
    return out


def _start(folder: Path, *args: str, sigint: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [hpo_script(), *args], cwd=folder, env=clean_env(folder / "hpo_home"), start_new_session=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # a shell started in the background ignores SIGINT; the test's Ctrl-C must behave like a terminal's
        preexec_fn=(lambda: signal.signal(signal.SIGINT, signal.SIG_DFL)) if sigint else None,
    )


def _kill_when(process: subprocess.Popen[str], home: Path, ended: int, sig: int = signal.SIGKILL) -> None:
    try:
        wait_until(lambda: _ended(home) >= ended, 240, interval_s=0.5, process=process,
                   message=f"{ended} ended trials in the store")
    except WaitTimeout:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        pytest.fail(f"hpo exited {process.wait()} early; its stderr:\n{process.communicate()[1][-3000:]}")
    os.killpg(process.pid, sig)
    process.wait(timeout=60)


def _assert_exactly_once(home: Path, budget: int, kept: dict[str, dict[str, Any]]) -> None:
    parents = _parents(home)
    assert len(parents) == 1, "a resume must reopen the same parent run, not start another sweep"
    parent = parents[0]
    assert parent.info.status == "FINISHED" and parent.data.tags[schema.SWEEP_STATE] == "finished"
    trials = _trials(home, parent.info.run_id)
    assert not [t for t in trials if t.info.status == "RUNNING"], "no trial run may be left RUNNING"
    current = [t for t in trials if schema.REPLACED_BY not in t.data.tags]
    numbers = sorted(int(t.data.tags[schema.TRIAL_NUMBER]) for t in current)
    assert numbers == list(range(budget)), "the budget's trials, numbered densely, each once"
    finished = [int(t.data.tags[schema.TRIAL_NUMBER]) for t in trials if t.info.status == "FINISHED"]
    assert len(finished) == len(set(finished)), "no two FINISHED runs of one trial number"
    for t in trials:
        if schema.REPLACED_BY in t.data.tags:
            assert t.info.status == "KILLED" and t.data.tags.get(schema.STOPPED_BY) == schema.STOPPED_BY_CRASH
            replacement = next(r for r in trials if r.info.run_id == t.data.tags[schema.REPLACED_BY])
            assert replacement.data.tags[schema.REPLACES] == t.info.run_id
            assert replacement.data.tags[schema.TRIAL_NUMBER] == t.data.tags[schema.TRIAL_NUMBER]
            # the params travel with the run's own journal entry: even a run killed at once holds them
            assert replacement.data.params == t.data.params, "a re-run keeps the killed trial's parameters"
    after = _snapshot(home)
    # the winner (even one that ran before a resume: its checkpoint is still in Ray's storage) is scored on
    # the test split once, unless the sweep run says why not
    tested = [t.info.run_id for t in trials if any(k.startswith(schema.TEST_PREFIX) for k in t.data.metrics)]
    expected = [] if parent.data.tags.get(schema.TEST_NOTE) else [parent.data.tags[schema.BEST_RUN_ID]]
    assert tested == expected, parent.data.tags.get(schema.TEST_NOTE)
    for run_id, before in kept.items():
        assert after.get(run_id) == before, f"trial run {run_id} changed after a resume"


@pytest.mark.slow
@pytest.mark.timeout(600)  # four drivers, each starting Ray: minutes on a busy 2-core machine
def test_kill_9_three_times_then_resume_runs_every_trial_exactly_once(tmp_path: Path) -> None:
    home = tmp_path / "hpo_home"
    # 12 epochs (~1-3 s a trial): the store, written through the journal, lags the driver by up to ~2 s, and
    # a kill must find trials still in flight however fast this machine is
    (tmp_path / "sweep.yaml").write_text(SWEEP.format(trials=5, epochs=SLOW_EPOCHS), encoding="utf-8")
    kept: dict[str, dict[str, Any]] = {}
    for ended in (1, 2, 3):  # after the first trial ended, midway, near the end (2 left, in flight)
        _kill_when(_start(tmp_path, "run", "sweep.yaml"), home, ended)
        state = _parents(home)[0].data.tags[schema.SWEEP_STATE]
        assert state == "running"  # the tag as the dead driver left it; readers show crashed (below)
        snap = _snapshot(home)
        assert all(kept[k] == snap[k] for k in kept), "a finished trial changed across a kill"
        kept = snap
    from tracker.queries import Store

    assert Store(f"sqlite:///{home / 'mlflow.db'}").list_sweeps()["state"].tolist() == ["crashed"]
    # resume from the stored file, raising the budget by one on the way (allowed: it extends the sweep)
    done = subprocess.run([hpo_script(), "resume", "chaos", "--set", "budget.trials=6"], cwd=tmp_path,
                          env=clean_env(home), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "resuming sweep chaos (crashed" in done.stderr and "of 6 trials done" in done.stderr
    _assert_exactly_once(home, 6, kept)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_sigint_then_hpo_run_again_resumes(tmp_path: Path) -> None:
    home = tmp_path / "hpo_home"
    (tmp_path / "sweep.yaml").write_text(SWEEP.format(trials=4, epochs=SLOW_EPOCHS), encoding="utf-8")
    _kill_when(_start(tmp_path, "run", "sweep.yaml", sigint=True), home, 1, signal.SIGINT)
    kept = _snapshot(home)
    again = _start(tmp_path, "run", "sweep.yaml")
    _, err = again.communicate(timeout=300)
    assert again.returncode == 0, err[-3000:]
    assert "resuming sweep chaos" in err and "of 4 trials done" in err
    _assert_exactly_once(home, 4, kept)
    # finished, file unchanged: nothing to do (no Ray, nothing written)
    same = subprocess.run([hpo_script(), "run", "sweep.yaml"], cwd=tmp_path, env=clean_env(home),
                          capture_output=True, text=True, timeout=120)
    assert same.returncode == 0 and "already finished: 4 of 4 trials done; nothing to do" in same.stderr
    _assert_exactly_once(home, 4, kept)
    # --new: a fresh sweep of the same name, even with a file the old one would refuse; the old one stays
    old_id = _parents(home)[0].info.run_id
    fresh = subprocess.run([hpo_script(), "run", "sweep.yaml", "--new", "--set", "budget.trials=1"], cwd=tmp_path,
                           env=clean_env(home), capture_output=True, text=True, timeout=300)
    assert fresh.returncode == 0, fresh.stderr[-3000:]
    assert "resuming" not in fresh.stderr
    parents = {p.info.run_id: p for p in _parents(home)}
    assert len(parents) == 2 and parents[old_id].info.status == "FINISHED"
    assert len(_trials(home, old_id)) >= 4 and len(_trials(home, next(p for p in parents if p != old_id))) == 1


# -- fast: no Ray -------------------------------------------------------------------------------------
def _stored_sweep(home: Path, text: str, *, state: str = "running", beat: dict[str, str] | None = None,
                  overrides: dict[str, str] | None = None) -> str:
    """A sweep parent run as a driver leaves it (sweep file and resolved config stored), no trials.

    ``overrides``: the ``--set`` pairs it ran with (they show in the resolved config only, as a driver stores them).
    """
    from hpo.loading import load_sweep
    from hpo.runner import _sweep_tags
    from tracker.mlflow_log import SweepLogger, open_client

    path = home.parent / "sweep.yaml"
    path.write_text(text, encoding="utf-8")
    config, _ = load_sweep(path, overrides)
    logger = SweepLogger.start(
        open_client(f"sqlite:///{home / 'mlflow.db'}"), experiment=config.experiment_name, run_name=config.name,
        tags={**_sweep_tags(config), schema.SWEEP_STATE: state, **(beat or {})}, params={},
        artifact_location=(home / "artifacts").as_uri(),
    )
    logger.log_text(logger.parent_run_id, text, schema.SWEEP_FILE_ARTIFACT)
    logger.log_json(logger.parent_run_id, config.model_dump(mode="json"), schema.RESOLVED_CONFIG_ARTIFACT)
    assert logger.close(), "the journaled writes are in the store before any command reads it"
    if state != "running":
        logger.client.set_terminated(logger.parent_run_id, "FINISHED" if state == "finished" else "KILLED")
    return logger.parent_run_id


def _hpo(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``hpo ARGS`` in this process (these paths start no Ray): exit code and output like a subprocess's."""
    import contextlib
    import io

    from hpo.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


def _dead_beat() -> dict[str, str]:
    dead = subprocess.Popen(["true"])
    dead.wait()
    return {schema.DRIVER_HOST: socket.gethostname(), schema.DRIVER_PID: str(dead.pid),
            schema.HEARTBEAT: str(time.time())}


def test_changed_search_is_refused_naming_the_fields(isolated_cwd: Path) -> None:
    home = isolated_cwd / "hpo_home"
    _stored_sweep(home, SWEEP.format(trials=6, epochs=3), state="interrupted")
    changed = SWEEP.format(trials=4, epochs=3).replace("max: 0.3", "max: 0.5")
    (isolated_cwd / "sweep.yaml").write_text(changed, encoding="utf-8")
    done = _hpo(isolated_cwd, "run", "sweep.yaml")
    assert done.returncode == 2, done.stderr
    assert "budget.trials, parameters.lr.max" in done.stderr and "--new" in done.stderr
    assert len(_parents(home)) == 1, "a refused resume creates nothing"


def test_finished_sweep_with_unchanged_file_has_nothing_to_do(isolated_cwd: Path) -> None:
    home = isolated_cwd / "hpo_home"
    text = SWEEP.format(trials=6, epochs=3).replace("trials: 6", "trials: 1")
    _stored_sweep(home, text, state="finished")
    # one ended trial, so 1 of 1 is done
    from hpo.loading import load_sweep
    from tracker.mlflow_log import SweepLogger

    mlflow = _client(home)
    parent = _parents(home)[0]
    logger = SweepLogger(mlflow, parent.info.experiment_id, parent.info.run_id)
    config, _ = load_sweep(isolated_cwd / "sweep.yaml")
    run_id = logger.start_trial("chaos-000", {"lr": 0.01, "optimizer": "adam", "epochs": 3},
                                {schema.TRIAL_NUMBER: "0", schema.TRIAL_ID: "t0"})
    logger.finish_trial(run_id, "FINISHED", {}, {f"best_{config.metric.name}": 0.9})
    done = _hpo(isolated_cwd, "run", "sweep.yaml")
    assert done.returncode == 0, done.stderr
    assert "sweep chaos already finished: 1 of 1 trials done; nothing to do" in done.stderr
    assert "Downloading artifacts" not in done.stderr  # reading the stored config prints no MLflow progress bar
    assert mlflow.get_run(parent.info.run_id).info.status == "FINISHED"


def test_second_live_driver_is_refused(isolated_cwd: Path) -> None:
    from hpo.lease import lock_path

    (isolated_cwd / "sweep.yaml").write_text(SWEEP.format(trials=2, epochs=2), encoding="utf-8")
    lock = lock_path("chaos", "chaos")
    lock.parent.mkdir(parents=True)
    with open(lock, "w", encoding="utf-8") as held:
        held.write(f"pid {os.getpid()}")
        held.flush()
        fcntl.flock(held.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        done = _hpo(isolated_cwd, "run", "sweep.yaml")
    assert done.returncode == 2
    assert f"sweep chaos is being run by pid {os.getpid()} on this machine" in done.stderr
    assert not _parents(isolated_cwd / "hpo_home"), "nothing is created while another driver holds the sweep"


def test_sweep_with_dead_driver_reads_as_crashed(isolated_cwd: Path) -> None:
    home = isolated_cwd / "hpo_home"
    _stored_sweep(home, SWEEP.format(trials=2, epochs=2), beat=_dead_beat())
    done = _hpo(isolated_cwd, "best", "chaos")
    assert done.returncode == 0, done.stderr
    assert "sweep chaos (crashed)" in done.stdout and "hpo resume chaos" in done.stdout


def test_liveness_rule() -> None:
    from tracker.liveness import driver_gone

    me = {schema.DRIVER_HOST: socket.gethostname(), schema.DRIVER_PID: str(os.getpid()), schema.HEARTBEAT: "1"}
    assert not driver_gone(me)  # on this host the pid decides: an old beat from a live pid is alive
    assert driver_gone(_dead_beat())
    far = {schema.DRIVER_HOST: "elsewhere", schema.DRIVER_PID: "1", schema.HEARTBEAT: "1000"}
    assert driver_gone(far, now_s=1000 + schema.HEARTBEAT_STALE_S + 1)
    assert not driver_gone(far, now_s=1000 + schema.HEARTBEAT_STALE_S - 1)
    assert not driver_gone({})  # written before heartbeats: as its tag says


def test_resume_refuses_unknown_names(isolated_cwd: Path) -> None:
    home = isolated_cwd / "hpo_home"
    _stored_sweep(home, SWEEP.format(trials=2, epochs=2), state="interrupted")
    done = _hpo(isolated_cwd, "resume", "nope")
    assert done.returncode == 2 and "no sweep named or with run id 'nope'" in done.stderr
    assert _parents(home)[0].data.tags[schema.SWEEP_STATE] == "interrupted"


# -- the rebuilt search, without Ray's trials ----------------------------------------------------------
GRID = """\
name: g
method: grid
metric: {name: val_accuracy, goal: maximize}
early_stop: {type: asha, grace_epochs: 1, reduction_factor: 2}
trainer: {task: digits, epochs: 2, options: {hidden: 16}}
parameters:
  lr: {values: [0.01, 0.1]}
  optimizer: {values: [sgd, adam]}
"""


def _plan(text: str, folder: Path, points: list[dict[str, Any]], states: list[str],
          histories: list[dict[str, list[float | None]]] | None = None) -> tuple[Any, Any]:
    from hpo.loading import load_sweep
    from hpo.resume import ResumePlan, StoredTrial, _sort_trials

    (folder / "s.yaml").write_text(text, encoding="utf-8")
    config, _ = load_sweep(folder / "s.yaml")
    histories = histories or [{"val_accuracy": [0.5, 0.6 + n / 100]} for n in range(len(points))]
    trials = [
        StoredTrial(run_id=f"{n:08x}" * 4, number=n, trial_id=f"t{n}", status=state,
                    tags={schema.TRIAL_NUMBER: str(n)}, params={"epochs": 2, "hidden": 16, **point},
                    history=history, metrics={"best_val_accuracy": 0.6 + n / 100})
        for n, (point, state, history) in enumerate(zip(points, states, histories, strict=True))
    ]
    ended, rerun, stale = _sort_trials(trials)
    from hpo import rules, space

    budget = rules.trials_planned(config)
    grid = space.grid_points(config) if space.runs_every_point(config, budget) else None
    return config, ResumePlan(sweep=config.name, parent_run_id="p", experiment_id="0", state="crashed",
                              metric="val_accuracy", goal="maximize", budget=budget, ended=ended, rerun=rerun,
                              stale=stale, grid=grid, objectives=[(m.name, m.goal) for m in config.objectives])


def test_resumed_grid_proposes_exactly_the_points_not_run_and_keeps_numbers(isolated_cwd: Path) -> None:
    from hpo.search import make_scheduler, make_searcher
    from hpo.trial_book import TrialBook

    points = [{"lr": 0.01, "optimizer": "sgd"}, {"lr": 0.01, "optimizer": "adam"}, {"lr": 0.1, "optimizer": "sgd"}]
    config, plan = _plan(GRID, isolated_cwd, points, ["FINISHED", "RUNNING", "FINISHED"])
    assert (len(plan.ended), len(plan.rerun), plan.to_start) == (2, 1, 2)
    book = TrialBook()
    plan.fill_book(book)  # as the runner does before it makes the searcher
    searcher = make_searcher(config, plan.budget, book, plan)
    proposed = {}
    for i in range(plan.to_start):
        config_i = searcher.suggest(f"new{i}")
        proposed[book.number_of(f"new{i}")] = {k: v for k, v in config_i.items() if k != "_hpo_grid_point"}
    assert proposed == {1: {"lr": 0.01, "optimizer": "adam"}, 3: {"lr": 0.1, "optimizer": "adam"}}
    scheduler = make_scheduler(config, book, 2, plan)  # ASHA's rungs (epochs 1, 2) hold the ended trials' values
    rungs = {milestone: recorded for milestone, recorded in scheduler._brackets[0]._rungs}
    assert sorted(rungs[1].values()) == [0.5, 0.5] and sorted(rungs[2].values()) == [0.6, 0.62]


def test_resumed_bayes_study_holds_the_ended_trials_and_reruns_first(isolated_cwd: Path) -> None:
    from hpo.search import make_searcher
    from hpo.trial_book import TrialBook

    points = [{"lr": 0.01, "optimizer": "sgd"}, {"lr": 0.2, "optimizer": "adam"}, {"lr": 0.05, "optimizer": "sgd"}]
    text = SWEEP.format(trials=5, epochs=2).replace("method: random", "method: bayes")
    config, plan = _plan(text, isolated_cwd, points, ["FINISHED", "FAILED", "RUNNING"])
    book = TrialBook()
    searcher = make_searcher(config, plan.budget, book, plan)
    # the searcher learns only what to re-run; the store's numbers are the runner's to write, once (under
    # Ray Client the relay copies them from the driver's book to the head's)
    assert (book.taken, book.replaces, list(book.requeued.values())) == (set(), {}, [2])
    plan.fill_book(book)
    study = searcher._ot_study
    assert [(t.state.name, t.params) for t in study.trials] == [
        ("COMPLETE", {"lr": 0.01, "optimizer": "sgd"}), ("FAIL", {"lr": 0.2, "optimizer": "adam"}),
        ("WAITING", {})]  # the in-flight trial's configuration, queued to be proposed first
    assert study.trials[0].value == 0.6 and study.trials[0].intermediate_values == {1: 0.5, 2: 0.6}
    first = searcher.suggest("a")
    assert first["lr"] == 0.05 and first["optimizer"] == "sgd" and book.number_of("a") == 2
    searcher.suggest("b")
    assert book.number_of("b") == 3 and book.replaces == {2: plan.rerun[0].run_id}


PARETO = """\
name: pareto
method: bayes
metric:
  - {name: val_accuracy, goal: maximize}
  - {name: params, goal: minimize}
budget: {trials: 4, max_concurrent: 1}
seed: 3
trainer: {task: digits, epochs: 3, options: {hidden: 16, train_fraction: 0.3}}
parameters:
  lr: {min: 0.001, max: 0.3, distribution: log_uniform}
  optimizer: {values: [sgd, adam]}
"""


def test_resumed_multi_objective_study_holds_each_trials_objective_values(isolated_cwd: Path) -> None:
    from hpo.search import make_searcher
    from hpo.trial_book import TrialBook

    points = [{"lr": 0.01, "optimizer": "sgd"}, {"lr": 0.2, "optimizer": "adam"}, {"lr": 0.05, "optimizer": "sgd"},
              {"lr": 0.003, "optimizer": "adam"}]
    histories: list[dict[str, list[float | None]]] = [
        {"val_accuracy": [0.5, 0.7, 0.6], "params": [900.0, 900.0, 900.0]},  # the values of its best epoch, 2
        {"val_accuracy": [0.4, 0.45], "params": [300.0, 300.0]},
        {"val_accuracy": [0.6, 0.8], "params": [500.0, None]},  # no params at its best epoch: Optuna failed it
        {"val_accuracy": [0.3], "params": [100.0]},
    ]
    config, plan = _plan(PARETO, isolated_cwd, points, ["FINISHED", "FINISHED", "FINISHED", "RUNNING"], histories)
    book = TrialBook()
    plan.fill_book(book)
    searcher = make_searcher(config, plan.budget, book, plan)
    study = searcher._ot_study
    assert [d.name for d in study.directions] == ["MAXIMIZE", "MINIMIZE"]
    assert [(t.state.name, t.values, t.intermediate_values) for t in study.trials] == [
        ("COMPLETE", [0.7, 900.0], {}), ("COMPLETE", [0.45, 300.0], {}), ("FAIL", None, {}), ("WAITING", None, {})]
    first = searcher.suggest("a")  # the in-flight trial runs again first, under its number
    assert (first["lr"], first["optimizer"], book.number_of("a")) == (0.003, "adam", 3)


def _add_trial(home: Path, number: int, history: dict[str, list[float]], status: str = "FINISHED") -> str:
    """A trial run of the home's one sweep, with per-epoch values; left RUNNING when ``status`` is RUNNING."""
    from tracker.mlflow_log import SweepLogger

    parent = _parents(home)[0]
    logger = SweepLogger(_client(home), parent.info.experiment_id, parent.info.run_id)
    run_id = logger.start_trial(f"t-{number:03d}", {"lr": 0.01 * (number + 1), "optimizer": "adam", "epochs": 3},
                                {schema.TRIAL_NUMBER: str(number), schema.TRIAL_ID: f"t{number}"})
    for epoch, values in enumerate(zip(*history.values(), strict=True), 1):
        logger.log_epoch(run_id, dict(zip(history, values, strict=True)), epoch, int(time.time() * 1000))
    if status != "RUNNING":
        best = max(history["val_accuracy"])
        logger.finish_trial(run_id, status, {}, {"best_val_accuracy": best, "final_val_accuracy": best})
    logger.close()
    return logger.run_id(run_id)


def test_finished_multi_objective_sweep_prints_its_front_when_run_again(isolated_cwd: Path) -> None:
    import json

    home = isolated_cwd / "hpo_home"
    _stored_sweep(home, PARETO.replace("trials: 4", "trials: 2"), state="finished")
    big = _add_trial(home, 0, {"val_accuracy": [0.6, 0.9], "params": [900.0, 900.0]})
    small = _add_trial(home, 1, {"val_accuracy": [0.5, 0.7], "params": [100.0, 100.0]})
    done = _hpo(isolated_cwd, "run", "sweep.yaml", "--json")  # nothing to do: the stored result, no Ray
    assert done.returncode == 0, done.stderr
    doc = json.loads(done.stdout)
    assert [o["name"] for o in doc["objectives"]] == ["val_accuracy", "params"]
    assert doc["pareto_front"] == [big, small] and doc["chosen"] == big
    assert {t["run_id"]: t["objectives"] for t in doc["trials"]} == {
        big: {"val_accuracy": 0.9, "params": 900.0}, small: {"val_accuracy": 0.7, "params": 100.0}}


def test_hpo_resume_keeps_the_set_values_and_raised_budget_it_ran_with(isolated_cwd: Path) -> None:
    home = isolated_cwd / "hpo_home"
    # run as `hpo run sweep.yaml --set parameters.lr.max=0.5`, then resumed with `--set budget.trials=2`:
    # the stored sweep.yaml says neither, the resolved config holds both
    _stored_sweep(home, SWEEP.format(trials=1, epochs=3), state="finished",
                  overrides={"parameters.lr.max": "0.5", "budget.trials": "2"})
    for number in (0, 1):
        _add_trial(home, number, {"val_accuracy": [0.5, 0.6 + number / 10]})
    done = _hpo(isolated_cwd, "resume", "chaos")
    assert done.returncode == 0, done.stderr
    assert "sweep chaos already finished: 2 of 2 trials done; nothing to do" in done.stderr
    changed = _hpo(isolated_cwd, "resume", "chaos", "--set", "parameters.lr.max=0.9")  # new values go on top
    assert changed.returncode == 2, changed.stderr
    assert re.search(r"differs from the one sweep chaos \(run \w+\) ran with in parameters.lr.max:", changed.stderr)
    bad = _hpo(isolated_cwd, "resume", "chaos", "--set", "budget.trials=0")
    assert bad.returncode == 2 and "resolved_config.json of sweep run" in bad.stderr and "--set budget" in bad.stderr
    stored = _parents(home)[0]
    assert stored.info.status == "FINISHED" and stored.data.tags[schema.SWEEP_STATE] == "finished"


def test_crashed_sweep_whose_time_is_spent_is_closed_not_left_running(isolated_cwd: Path) -> None:
    home = isolated_cwd / "hpo_home"
    text = SWEEP.format(trials=3, epochs=3).replace("max_concurrent: 2", "max_concurrent: 2, time_limit_s: 60")
    parent_id = _stored_sweep(home, text, beat={**_dead_beat(), schema.ELAPSED_S: "75.0"})
    ended = _add_trial(home, 0, {"val_accuracy": [0.5, 0.7]})
    left = _add_trial(home, 1, {"val_accuracy": [0.4]}, status="RUNNING")  # in flight when the driver died
    done = _hpo(isolated_cwd, "run", "sweep.yaml")
    assert done.returncode == 0, done.stderr
    assert "has used its time budget (75 s): 1 of 3 trials done; nothing to do" in done.stderr
    mlflow = _client(home)
    parent = mlflow.get_run(parent_id)
    assert parent.info.status == "KILLED" and parent.data.tags[schema.SWEEP_STATE] == "interrupted"
    assert parent.data.tags[schema.BEST_RUN_ID] == ended
    killed = mlflow.get_run(left)
    assert killed.info.status == "KILLED" and killed.data.tags[schema.STOPPED_BY] == schema.STOPPED_BY_CRASH
    assert mlflow.get_run(ended).info.status == "FINISHED"
    again = _hpo(isolated_cwd, "run", "sweep.yaml")  # closed once: nothing is reopened a second time
    assert again.returncode == 0 and "left open" not in again.stderr
    assert mlflow.get_run(parent_id).data.tags[schema.RESUMES] == "1"


def test_dashboard_shows_a_dead_drivers_sweep_as_crashed(isolated_cwd: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from streamlit.testing.v1 import AppTest

    from tracker.mlflow_log import SweepLogger

    home = isolated_cwd / "hpo_home"
    parent_id = _stored_sweep(home, SWEEP.format(trials=2, epochs=2), beat=_dead_beat())
    logger = SweepLogger(_client(home), _parents(home)[0].info.experiment_id, parent_id)
    run_id = logger.start_trial("chaos-000", {"lr": 0.01, "optimizer": "adam"}, {schema.TRIAL_NUMBER: "0"})
    logger.finish_trial(run_id, "FINISHED", {}, {"best_val_accuracy": 0.9})
    monkeypatch.setenv("HPO_TRACKING_URI", f"sqlite:///{home / 'mlflow.db'}")
    views = Path(__file__).resolve().parents[2] / "dashboard" / "views"
    sweeps = AppTest.from_file(str(views / "sweeps.py"), default_timeout=60).run()
    assert not sweeps.exception, [e.value for e in sweeps.exception]
    assert sweeps.dataframe[0].value["state"].tolist() == ["crashed"]
    page = AppTest.from_file(str(views / "sweep.py"), default_timeout=60)
    page.query_params["run"] = parent_id
    page.run()
    assert not page.exception, [e.value for e in page.exception]
    assert "hpo resume chaos" in " ".join(w.value for w in page.warning)
    assert "**crashed**" in " ".join(c.value for c in page.caption)


def test_kept_trials_carry_the_diagnosis_the_runner_gave_them() -> None:
    """A resumed (or finished) sweep's stored trials are diagnosed by the one path, so its leaderboard and the
    sweep summary written when it ends count them too."""
    from hpo.diagnosis import diagnose_trial
    from hpo.resume import StoredTrial

    train = [2.3, 1.2, 0.6, 0.3, 0.15, 0.08, 0.04, 0.02]
    val = [2.3, 1.3, 0.9, 0.85, 0.9, 1.0, 1.15, 1.3]
    history: dict[str, list[float | None]] = {"train_loss": list(train), "val_loss": list(val)}
    stored = StoredTrial("r0", 0, "t0", "FINISHED", {schema.TASK: "digits"}, {"lr": 0.01, "dropout": 0.0},
                         history, {"best_val_loss": 0.85})
    record = stored.record("val_loss")
    expected = diagnose_trial(history, status="FINISHED", params={"lr": 0.01, "dropout": 0.0}, n_classes=10)
    assert expected is not None and record.diagnosis is not None
    assert record.diagnosis.verdict == expected.verdict == "overfitting"


RESUMABLE = """\
name: resumable
method: grid
metric: {name: val_accuracy, goal: maximize}
seed: 5
trainer: {task: digits, epochs: 12, options: {hidden: 256, batch_size: 16, dropout: 0.1, scheduler: cosine}}
parameters:
  lr: {values: [0.003]}
  optimizer: {values: [adam]}
"""


@pytest.mark.slow
@pytest.mark.timeout(400)
def test_a_trial_killed_mid_run_continues_from_its_saved_state(tmp_path: Path) -> None:
    """kill -9 of `hpo run` right after the trial saved its first epoch's state; `hpo run` again continues
    that trial from the state: no epoch logged twice or lost, numbers equal to an uninterrupted run."""
    home = tmp_path / "hpo_home"
    (tmp_path / "sweep.yaml").write_text(RESUMABLE, encoding="utf-8")
    driver = _start(tmp_path, "run", "sweep.yaml")
    states = home / "ray" / "trial_states"
    try:  # the state file, not the store: the journal lags the trial by up to 2 s, the trial has ~12 epochs
        wait_until(lambda: any(states.glob("*/*.pt")), 240, interval_s=0.05, process=driver,
                   message="a saved trial state")
    except WaitTimeout:
        os.killpg(driver.pid, signal.SIGKILL)
        pytest.fail(f"hpo exited {driver.wait()} early; its stderr:\n{driver.communicate()[1][-3000:]}")
    os.killpg(driver.pid, signal.SIGKILL)
    driver.wait(timeout=60)

    again = subprocess.run([hpo_script(), "run", "sweep.yaml"], cwd=tmp_path, env=clean_env(home),
                           capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr[-3000:]
    assert "resuming sweep resumable (crashed" in again.stderr
    _assert_exactly_once(home, 1, {})
    trials = _trials(home, _parents(home)[0].info.run_id)
    killed = next(t for t in trials if t.info.status == "KILLED")
    rerun = next(t for t in trials if t.info.status == "FINISHED")
    assert rerun.data.tags[schema.REPLACES] == killed.info.run_id
    assert int(rerun.data.tags[schema.RESUMED_FROM_EPOCH]) >= 1, "the re-run continued from the saved state"
    mlflow = _client(home)
    for key in ("val_loss", "train_loss", "val_accuracy", "lr"):
        steps = [p.step for run in (killed, rerun) for p in mlflow.get_metric_history(run.info.run_id, key)]
        assert sorted(steps) == list(range(1, 13)), f"{key}: every epoch stored once over the two runs"
    assert rerun.data.metrics[schema.EPOCHS_RUN] == 12
    assert not list(states.glob("*/*.pt")), "a finished sweep leaves no trial state behind"

    # the continued epochs equal an uninterrupted run of the same trial, to the bit (hpo reproduce: from scratch)
    import contextlib
    import io
    import json

    from hpo.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(["reproduce", rerun.info.run_id, "--tracking-uri", f"sqlite:///{home / 'mlflow.db'}", "--json"])
    doc = json.loads(out.getvalue())
    assert code == 0 and set(doc["max_abs_diff"].values()) == {0.0} and doc["epochs_rerun"] == 12


def test_a_continued_reruns_history_is_read_with_its_killed_runs_epochs() -> None:
    from hpo.resume import StoredTrial
    from hpo.stored_history import stitch_reruns

    killed = StoredTrial("k", 0, "t1", "KILLED", {}, {}, {"val_loss": [0.9, 0.8]}, {})
    rerun = StoredTrial("r", 0, "t2", "FINISHED", {schema.REPLACES: "k"}, {},
                        {"val_loss": [None, None, 0.7, 0.6], "lr": [None, None, 0.1, 0.1]}, {})
    stitch_reruns([killed, rerun])
    assert rerun.history == {"val_loss": [0.9, 0.8, 0.7, 0.6], "lr": [None, None, 0.1, 0.1]}
    assert killed.history == {"val_loss": [0.9, 0.8]}
