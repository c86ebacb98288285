"""`hpo reproduce RUN_ID`: a real stored trial reruns bit-identically; an altered stored point is named."""

from __future__ import annotations

import contextlib
import io
import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from sweep_reads import client

from hpo.cli import main
from hpo.provenance import environment_tags
from hpo.reproduce import compare, provenance_warnings, render
from tracker import schema


def _copy_store(uri: str, folder: Path) -> str:
    """A private copy of the shared sweep's database (its artifact folder stays where it is)."""
    target = folder / "mlflow.db"
    with sqlite3.connect(uri.removeprefix("sqlite:///")) as src, sqlite3.connect(target) as dst:
        src.backup(dst)
    return f"sqlite:///{target}"


def _reproduce(*args: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(["reproduce", *args])
    return code, out.getvalue(), err.getvalue()


def test_a_real_trial_reproduces_exactly_and_an_altered_point_is_named(small_sweep_store: Any, tmp_path: Path) -> None:
    best = small_sweep_store.result_json["best"]["run_id"]  # adam lr 0.05: FINISHED after 6 epochs
    uri = _copy_store(small_sweep_store.tracking_uri, tmp_path)
    stored = client(uri).get_run(best)
    assert stored.data.tags[schema.THREADS] == "1"  # what the rerun needs, recorded by the sweep
    assert stored.data.tags[schema.TRIAL_SEED] == "0" and stored.data.tags[schema.DEVICE] == "cpu"
    assert stored.data.tags[schema.HOST] and stored.data.tags[schema.VERSION_PREFIX + "hpo"]

    code, out, _ = _reproduce(best, "--tracking-uri", uri, "--json")
    doc = json.loads(out)
    assert code == 0 and doc["reproduced"] is True
    assert doc["epochs_stored"] == doc["epochs_rerun"] == 6
    assert {"train_loss", "val_loss", "val_accuracy", "lr"} <= set(doc["max_abs_diff"])
    assert set(doc["max_abs_diff"].values()) == {0.0}  # bit-identical, not merely close
    assert "epoch_seconds" not in doc["max_abs_diff"]

    # a hand correction of epoch 4's val_loss, written through MLflow's client as a later point at that step
    history = client(uri).get_metric_history(best, "val_loss")
    old = next(p for p in history if p.step == 4)
    client(uri).log_metric(best, "val_loss", old.value + 0.01, timestamp=old.timestamp + 1, step=4)
    code, out, _ = _reproduce(best, "--tracking-uri", uri)
    assert code == 1
    assert "not reproduced (exact): val_loss differs first at epoch 4" in out
    assert f"stored {old.value + 0.01}" in out


def test_a_sweep_run_or_an_unknown_id_is_refused_with_exit_2(small_sweep_store: Any) -> None:
    uri = small_sweep_store.tracking_uri
    code, out, err = _reproduce(small_sweep_store.parent_run_id, "--tracking-uri", uri)
    assert code == 2 and out == ""
    assert f"run {small_sweep_store.parent_run_id} is a sweep run, not a trial" in err
    code, _, err = _reproduce("0123456789abcdef0123456789abcdef", "--tracking-uri", uri)
    assert code == 2 and "no run with id '0123456789abcdef0123456789abcdef' in the store" in err
    code, _, err = _reproduce(small_sweep_store.result_json["best"]["run_id"], "--tracking-uri", uri, "--tol", "-1")
    assert code == 2 and "--tol must be a number >= 0, got -1.0" in err


def test_compare_skips_epochs_a_continued_run_never_logged_and_names_a_missing_value() -> None:
    stored = {"val_loss": [None, None, 0.5, 0.4], "stopped_early": [None, None, None, 1.0], "epoch_seconds": [9.0] * 4}
    rerun = [{"val_loss": 0.9, "epoch_seconds": 1.0}, {"val_loss": 0.7}, {"val_loss": 0.5},
             {"val_loss": 0.4, "stopped_early": 1.0}]
    same = compare(stored, rerun, 0.0)
    assert same.reproduced and same.max_diff == {"val_loss": 0.0, "stopped_early": 0.0}
    rerun[3] = {"val_loss": 0.41, "stopped_early": 1.0}
    assert compare(stored, rerun, 0.02).reproduced  # within --tol
    off = compare(stored, rerun, 0.005)
    assert off.first == (4, "val_loss", 0.4, 0.41) and off.max_diff["val_loss"] == pytest.approx(0.01)
    rerun[3] = {"val_loss": 0.4}  # the rerun did not stop early where the stored trial did
    missing = compare(stored, rerun, 0.0)
    assert missing.first == (4, "stopped_early", 1.0, None) and missing.max_diff["stopped_early"] == float("inf")


def test_only_the_training_signals_differ_is_said_and_a_prefix_ignores_them() -> None:
    """A trial stored before the signals' sampling changed: its curves reproduce, its signals do not."""
    stored = {"val_loss": [0.9, 0.7], "signals/grad_norm": [1.0, 2.0], "signals/dead_relu": [0.0, 0.1]}
    rerun = [{"val_loss": 0.9, "signals/grad_norm": 1.5, "signals/dead_relu": 0.0},
             {"val_loss": 0.7, "signals/grad_norm": 2.5, "signals/dead_relu": 0.2}]
    both = compare(stored, rerun, 0.0)
    assert not both.reproduced and both.first[:2] == (1, "signals/grad_norm")
    doc = {"trial_number": "0", "sweep": "s", "run_id": "r", "status": "FINISHED", "threads": 1, "epochs_rerun": 2,
           "epochs_stored": 2, "ignored": list(schema.TIMING_METRICS), "tolerance": 0.0, "reproduced": False,
           "error": None, "max_abs_diff": both.max_diff,
           "first_difference": dict(zip(("epoch", "metric", "stored", "rerun"), both.first, strict=True))}
    assert "only the training signals (signals/*) differ" in render(doc) and "--ignore signals/" in render(doc)
    curves = compare(stored, rerun, 0.0, (*schema.TIMING_METRICS, schema.SIGNALS_PREFIX))
    assert curves.reproduced and curves.max_diff == {"val_loss": 0.0}
    rerun[1]["val_loss"] = 0.8  # the training itself differs: no such hint
    doc["max_abs_diff"] = compare(stored, rerun, 0.0).max_diff
    assert "only the training signals" not in render(doc)


def test_the_trainer_and_the_store_name_the_signals_alike() -> None:
    from trainers import signal_names

    assert signal_names.PREFIX == schema.SIGNALS_PREFIX


def test_a_trial_recorded_with_other_versions_or_code_is_warned_about() -> None:
    now = environment_tags()
    assert provenance_warnings({**now}) == []
    old = {**now, schema.VERSION_PREFIX + "torch": "1.0.0", schema.GIT_COMMIT: "0" * 40 + "+dirty"}
    warnings = provenance_warnings(old)
    assert f"the trial ran with torch 1.0.0, this is torch {now[schema.VERSION_PREFIX + 'torch']}" in warnings[0]
    assert len(warnings) == 2 and "+dirty" in warnings[1]  # another commit than this folder's, or uncommitted edits
