"""The write-ahead journal against a real SQLite MLflow store: every write reaches the store exactly once,
whatever stops the replay, with the timestamps the trials reported."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path
from typing import Any

import pytest

from tracker import schema
from tracker.journal import Journal, JournalWriteError, cursor_path, list_journals
from tracker.mlflow_log import SweepLogger, open_client
from tracker.replay import Replayer, sync_journals

T0 = 1_700_000_000_000  # the trials' own clock: points must keep it, not the replay's
EPOCHS = 3
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """One migrated SQLite store for the module (a migration costs seconds); tests use their own experiments."""
    return open_client(f"sqlite:///{tmp_path_factory.mktemp('store') / 'mlflow.db'}")


def _parent(client: Any, name: str) -> tuple[str, str]:
    experiment_id = client.create_experiment(name)
    run = client.create_run(experiment_id, run_name=name, tags={schema.SWEEP: name})
    return experiment_id, run.info.run_id


def _write_journal(folder: Path, client: Any, name: str, trials: int = 2,
                   params_in_run: bool = False) -> tuple[Path, str, str]:
    """A finished sweep's journal as a driver writes it: trials interleaved, as concurrent trials are.
    ``params_in_run``: the params travel in the run's own entry (as ``SweepLogger.start_trial`` writes
    them), else in a ``params`` entry of their own (journals of earlier drivers).
    Returns the journal, the experiment id and the parent run id."""
    experiment_id, parent = _parent(client, name)
    journal = Journal.create(folder, sweep=name, tracking_uri=client.tracking_uri, experiment_id=experiment_id,
                             parent_run_id=parent)
    keys = [f"{name}-{n}-{uuid.uuid4().hex[:6]}" for n in range(trials)]
    for n, key in enumerate(keys):
        params = {"lr": str(0.1 * (n + 1))}
        journal.append({"op": "run", "key": key, "name": f"{name}-{n:03d}", "ms": T0, "parent_run_id": parent,
                        "tags": {schema.TRIAL_NUMBER: str(n), **schema.kind_tags(schema.KIND_TRIAL)},
                        **({"params": params} if params_in_run else {})})
        if not params_in_run:
            journal.append({"op": "params", "key": key, "params": params})
    for epoch in range(1, EPOCHS + 1):
        for n, key in enumerate(keys):
            journal.append({"op": "metrics", "key": key, "points": [
                ["val_loss", 1.0 / epoch + n, T0 + 1000 * epoch, epoch], ["train_loss", 2.0 / epoch, T0 + 1000 * epoch,
                                                                          epoch]]})
    for key in keys:
        journal.append({"op": "tags", "key": key, "tags": {schema.DIAGNOSIS: "good_fit"}})
        journal.append({"op": "end", "key": key, "status": "FINISHED", "ms": T0 + 9000})
    journal.append({"op": "tags", "run_id": parent, "refs": {schema.BEST_RUN_ID: keys[0]},
                    "tags": {schema.BEST_RUN_ID: keys[0], schema.SWEEP_STATE: "finished"}})
    journal.append({"op": "end", "run_id": parent, "status": "FINISHED", "ms": T0 + 10_000})
    journal.close()
    journal.release()
    return journal.path, experiment_id, parent


def _assert_stored_once(client: Any, experiment_id: str, parent: str, trials: int = 2) -> None:
    """Each trial once, finished, with every epoch point once at its original time; the parent links trial 0."""
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{schema.PARENT_RUN_ID}` = '{parent}'")
    assert sorted(r.data.tags[schema.TRIAL_NUMBER] for r in runs) == [str(n) for n in range(trials)]
    assert len({r.data.tags[schema.RUN_KEY] for r in runs}) == trials
    for run in runs:
        n = int(run.data.tags[schema.TRIAL_NUMBER])
        assert run.info.status == "FINISHED" and run.info.start_time == T0 and run.info.end_time == T0 + 9000
        assert run.data.params == {"lr": str(0.1 * (n + 1))}
        assert run.data.tags[schema.DIAGNOSIS] == "good_fit"
        for key, first in (("val_loss", 1.0 + n), ("train_loss", 2.0)):
            history = sorted((m.step, m.timestamp, m.value) for m in client.get_metric_history(run.info.run_id, key))
            assert history == [(e, T0 + 1000 * e, first / e if key == "train_loss" else 1.0 / e + n)
                               for e in range(1, EPOCHS + 1)]
    parent_run = client.get_run(parent)
    first = next(r for r in runs if r.data.tags[schema.TRIAL_NUMBER] == "0")
    assert parent_run.data.tags[schema.BEST_RUN_ID] == first.info.run_id  # the key became the run id
    assert parent_run.info.status == "FINISHED"


def test_replay_writes_in_order_and_twice_writes_once(client: Any, tmp_path: Path) -> None:
    path, experiment_id, parent = _write_journal(tmp_path, client, "twice")
    assert Replayer(path, client).replay() > 0
    _assert_stored_once(client, experiment_id, parent)
    assert Replayer(path, client).replay() == 0  # the cursor says everything is written
    cursor_path(path).unlink()  # a lost cursor: everything is checked against the store, nothing sent twice
    again = Replayer(path, client)
    again.replay()
    assert again.counts.runs_created == 0 and again.counts.runs_found == 2
    assert again.counts.points == 0 and again.counts.points_skipped == 2 * 2 * EPOCHS
    _assert_stored_once(client, experiment_id, parent)


class _Killed(BaseException):
    """The replaying process died right after a write reached the store, before the cursor recorded it."""


class _DiesAfter:
    """The real client; the ``n``-th write to the store goes through, then the replay dies (the worst
    moment: the store has it, the cursor does not)."""

    WRITES = frozenset({"create_run", "log_batch", "set_terminated", "log_text", "log_artifacts"})

    def __init__(self, client: Any, n: int) -> None:
        self.client, self.left = client, n

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.client, name)
        if name not in self.WRITES:
            return attr

        def write(*args: Any, **kwargs: Any) -> Any:
            result = attr(*args, **kwargs)
            self.left -= 1
            if self.left == 0:
                raise _Killed
            return result

        return write


@pytest.mark.parametrize("params_in_run", [False, True], ids=["params apart", "params with the run"])
def test_a_replay_killed_after_any_write_then_replayed_writes_once(client: Any, tmp_path: Path,
                                                                  params_in_run: bool) -> None:
    """Killed right after a run was created, its params still reach it on the next replay (no run is left
    without its configuration), and nothing is written twice."""
    killed_at = []
    for n in range(1, 40):
        path, experiment_id, parent = _write_journal(tmp_path / str(n), client, f"killed-{int(params_in_run)}-{n}",
                                                     params_in_run=params_in_run)
        try:
            Replayer(path, _DiesAfter(client, n)).replay()
        except _Killed:
            killed_at.append(n)
            Replayer(path, client).replay()  # the next start
            _assert_stored_once(client, experiment_id, parent)
            continue
        _assert_stored_once(client, experiment_id, parent)
        break  # n is past the last write: every moment was tried
    assert len(killed_at) >= 8  # runs, params, the points of each run, tags, ends: every kind of write


def test_a_journal_left_by_a_killed_driver_is_written_once_by_hpo_sync(client: Any, tmp_path: Path,
                                                                       run_hpo: Any) -> None:
    home = tmp_path / "home"
    experiment_id, parent = _parent(client, "orphan")
    script = textwrap.dedent(f"""
        import os, signal
        from tracker.journal import Journal, journal_folder
        journal = Journal.create(journal_folder(), sweep="orphan", tracking_uri={client.tracking_uri!r},
                                 experiment_id={experiment_id!r}, parent_run_id={parent!r})
        journal.append({{"op": "run", "key": "k0", "name": "orphan-000", "ms": {T0}, "parent_run_id": {parent!r},
                         "tags": {{"{schema.TRIAL_NUMBER}": "0"}}}})
        for epoch in (1, 2, 3):
            journal.append({{"op": "metrics", "key": "k0", "points": [["val_loss", 1.0 / epoch, {T0} + epoch, epoch]]}})
        journal._file.write(b'{{"op": "metrics", "key": "k0", "poi')  # torn by the kill: never counted as written
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    env = {**os.environ, "HPO_HOME": str(home), "PYTHONPATH": str(ROOT)}
    child = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=60)
    assert child.returncode == -signal.SIGKILL, child.stderr
    assert len(list_journals(home / "journal")) == 1

    synced = run_hpo(["sync"], cwd=tmp_path, home=home, timeout_s=120)
    assert synced.returncode == 0, synced.stderr
    assert "orphan" in synced.stdout and "1 runs created, 3 metric points" in synced.stdout
    runs = client.search_runs([experiment_id], filter_string=f"tags.`{schema.RUN_KEY}` = 'k0'")
    assert len(runs) == 1 and runs[0].data.tags[schema.PARENT_RUN_ID] == parent
    history = client.get_metric_history(runs[0].info.run_id, "val_loss")
    assert sorted((m.step, m.timestamp) for m in history) == [(e, T0 + e) for e in (1, 2, 3)]
    assert list_journals(home / "journal") == []  # written in full: removed

    again = run_hpo(["sync", "orphan"], cwd=tmp_path, home=home, timeout_s=120)
    assert again.returncode == 0 and "nothing to sync: no journal of sweep orphan" in again.stdout
    assert len(client.get_metric_history(runs[0].info.run_id, "val_loss")) == 3


def test_sync_leaves_a_live_journal_to_its_driver_and_refuses_name_with_all(client: Any, tmp_path: Path,
                                                                            run_hpo: Any) -> None:
    experiment_id, parent = _parent(client, "live")
    journal = Journal.create(tmp_path, sweep="live", tracking_uri=client.tracking_uri,
                             experiment_id=experiment_id, parent_run_id=parent)
    [report] = sync_journals(lambda uri: client, folder=tmp_path)
    assert report.status == "in_use" and journal.path.exists()
    journal.close()  # its writer is done, but its replay has not let go of it yet
    [report] = sync_journals(lambda uri: client, folder=tmp_path)
    assert report.status == "in_use"
    journal.release()
    [report] = sync_journals(lambda uri: client, folder=tmp_path)
    assert report.status == "written" and not journal.path.exists()

    both = run_hpo(["sync", "live", "--all"], cwd=tmp_path, home=tmp_path / "home", timeout_s=60)
    assert both.returncode == 2 and "give a sweep name or --all, not both" in both.stderr


def test_a_journal_of_another_store_is_not_written_here(client: Any, tmp_path: Path) -> None:
    path, _, _ = _write_journal(tmp_path, client, "elsewhere")
    [report] = sync_journals(lambda uri: client, tracking_uri="sqlite:////nowhere/mlflow.db", folder=tmp_path)
    assert report.status == "other_store" and path.exists()


def test_sweep_logger_writes_through_the_journal_with_the_trials_timestamps(client: Any, tmp_path: Path) -> None:
    logger = SweepLogger.start(client, experiment="through", run_name="through", tags={schema.SWEEP: "through"},
                               params={"budget.trials": 2},
                               artifact_location=(tmp_path / "artifacts").as_uri(),  # not ./mlruns of the cwd
                               journal_folder=tmp_path)
    journal = logger.journal.path
    assert journal.exists() and journal.parent == tmp_path
    run_ids = []
    for n in range(2):
        run_id = logger.start_trial(f"through-{n:03d}", {"lr": 0.1}, {schema.TRIAL_NUMBER: str(n)})
        for epoch in range(1, EPOCHS + 1):
            logger.log_epoch(run_id, {"val_loss": 1.0 / epoch}, step=epoch, timestamp_ms=T0 + epoch)
        logger.finish_trial(run_id, "FINISHED", {}, {schema.EPOCHS_RUN: float(EPOCHS)})
        run_ids.append(logger.run_id(run_id))
    logger.log_text(logger.parent_run_id, "name: through\n", schema.SWEEP_FILE_ARTIFACT)
    logger.finish_sweep("FINISHED", {schema.BEST_RUN_ID: run_ids[0]}, {"trials_finished": 2.0})
    assert logger.unsynced is None and not journal.exists()  # the store took everything: nothing left to sync
    for run_id in run_ids:
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.data.tags[schema.RUN_KEY]
        assert run.data.tags[schema.PARENT_RUN_ID] == logger.parent_run_id
        assert sorted((m.step, m.timestamp) for m in client.get_metric_history(run_id, "val_loss")) == [
            (e, T0 + e) for e in range(1, EPOCHS + 1)]
    parent = client.get_run(logger.parent_run_id)
    assert parent.info.status == "FINISHED" and parent.data.params == {"budget.trials": "2"}
    assert parent.data.tags[schema.BEST_RUN_ID] == run_ids[0]
    text = client.download_artifacts(logger.parent_run_id, schema.SWEEP_FILE_ARTIFACT, str(tmp_path))
    assert Path(text).read_text() == "name: through\n"


def test_a_full_disk_is_an_error_naming_the_journal(tmp_path: Path) -> None:
    path = tmp_path / "sweep.x.jsonl"
    journal = Journal(path, open("/dev/full", "ab", buffering=0))  # noqa: SIM115 - writes fail with ENOSPC
    with pytest.raises(JournalWriteError, match=rf"cannot write the journal {path}: the disk is full.*free space"):
        journal.append({"op": "metrics", "run_id": "r", "points": [["a", 1.0, T0, 1]]})
    with pytest.raises(JournalWriteError, match="the disk is full"):  # nothing written after a torn line
        journal.append({"op": "end", "run_id": "r", "status": "FINISHED", "ms": T0})


def test_an_unwritable_journal_folder_fails_the_sweep_at_once_naming_it(client: Any, tmp_path: Path) -> None:
    blocked = tmp_path / "journal"
    blocked.write_text("a file where the journal folder should be")
    with pytest.raises(JournalWriteError, match=rf"cannot write the journal {blocked}/unwritable\..*: File exists"):
        SweepLogger.start(client, experiment="unwritable", run_name="unwritable", tags={schema.SWEEP: "unwritable"},
                          params={}, artifact_location=None, journal_folder=blocked)
    [run] = client.search_runs([client.get_experiment_by_name("unwritable").experiment_id])
    assert run.info.status == "FAILED" and run.data.tags[schema.SWEEP_STATE] == "failed"  # not left RUNNING
