"""One diagnosis path for a stored trial: the runner (at trial end), ``hpo diagnose RUN_ID`` and the
dashboard's fallback give the same diagnosis for the same run, failed and early-stopped ones included."""

from __future__ import annotations

import dataclasses
import json

import pytest

from dashboard import _analysis, _data
from hpo.cli import main
from hpo.diagnosis import task_val_size
from tracker import schema
from tracker.queries import Store


def _hpo_diagnose(uri: str, target: str, capsys: pytest.CaptureFixture[str]) -> dict:
    assert main(["diagnose", target, "--json", "--tracking-uri", uri]) == 0
    return json.loads(capsys.readouterr().out)


def test_runner_cli_and_dashboard_agree_on_every_stored_trial(small_sweep_store, capsys):
    uri, parent, result = small_sweep_store
    store = Store(uri)
    kinds = set()
    for row in result["trials"]:
        trial = store.trial(row["run_id"])
        logged = trial.diagnosis  # diagnosis.json, written by the runner when the trial ended
        assert logged is not None, row
        cli = _hpo_diagnose(uri, row["run_id"], capsys)
        assert cli.pop("run_id") == row["run_id"]
        # the dashboard's own computation, as for a trial that logged no diagnosis
        shown, source = _data.trial_diagnosis(dataclasses.replace(trial, diagnosis=None))
        assert source == "computed now from the curves"
        assert cli == shown == json.loads(json.dumps(logged)), row
        assert cli["verdict"] == trial.tags[schema.DIAGNOSIS]
        if cli["verdict"] not in ("insufficient_data", "diverged"):  # the built-in task's split reaches every path
            assert cli["evidence"]["val_size"] == task_val_size(trial.tags[schema.TASK], trial.params) > 0
        kinds.add("failed" if row["status"] == "FAILED" else "stopped" if row["early_stopped"] else "finished")
        if row["early_stopped"] and shown["verdict"] != "insufficient_data":
            assert "stopped_early" in shown["findings"]  # the scheduler's stop reaches every path
            kinds.add("judged after a stop")
        if row["status"] == "FAILED":
            assert shown["verdict"] == "diverged"
    assert kinds == {"failed", "stopped", "finished", "judged after a stop"}


def test_sweep_page_verdicts_match_hpo_diagnose_of_the_sweep(small_sweep_store, capsys):
    uri, parent, _ = small_sweep_store
    data = Store(uri).sweep(parent)
    untagged = dataclasses.replace(data, trials=data.trials.assign(verdict=None, confidence=None))
    filled = _analysis.fill_verdicts(untagged).set_index("run_id")
    cli = _hpo_diagnose(uri, parent, capsys)
    assert len(cli["trials"]) == len(filled) == 6
    for trial in cli["trials"]:
        assert filled.loc[trial["run_id"], "verdict"] == trial["verdict"]
        assert filled.loc[trial["run_id"], "confidence"] == pytest.approx(trial["confidence"])
    assert set(filled["verdict"]) == set(data.trials["verdict"])  # and both match what the runner logged
