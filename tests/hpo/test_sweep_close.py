"""Closing a sweep's parent run reads nothing from the store (it may be down then: the journal carries
every write), and the stored config keeps no password from ``$MLFLOW_TRACKING_URI``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from hpo import runner
from hpo.config import flatten
from hpo.loading import load_sweep, validate
from hpo.results import TrialRecord
from tracker import schema
from tracker.mlflow_log import SweepLogger, open_client

SWEEP = {
    "name": "closing",
    "metric": {"name": "val_accuracy", "goal": "maximize"},
    "trainer": {"task": "digits", "epochs": 2},
    "parameters": {"lr": {"values": [0.01, 0.1]}},
}


class _StoreGone:
    """Stands for a client whose store went away after the sweep started: every call raises."""

    tracking_uri = "http://127.0.0.1:1"

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"_finish_parent called the store directly ({name}); it must go through the journal")


def _logger(tmp_path: Path) -> tuple[SweepLogger, Any]:
    client = open_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    logger = SweepLogger.start(client, experiment="closing", run_name="closing", tags={schema.SWEEP: "closing"},
                               params={}, artifact_location=str(tmp_path / "artifacts"),
                               journal_folder=tmp_path / "journal")
    return logger, client


@pytest.mark.parametrize("best_logged", [False, True])
def test_finish_parent_reads_nothing_from_the_store(tmp_path: Path, best_logged: bool) -> None:
    logger, client = _logger(tmp_path)
    trial = logger.start_trial("closing-000", {"lr": 0.1}, {schema.TRIAL_NUMBER: "0"})
    logger.finish_trial(trial, "FINISHED", {}, {"best_val_accuracy": 0.9})
    record = TrialRecord("t0", 0, logger.run_id(trial), {"lr": 0.1}, status="FINISHED", best=0.9, final=0.9,
                         epochs=2)
    config = validate(dict(SWEEP), source="test")
    logger.client = _StoreGone()  # the journal's replayer keeps its own client: only direct reads would fail
    runner._finish_parent(logger, config, [record], record, "FINISHED", False, 1.0, best_logged)
    parent = client.get_run(logger.parent_run_id)
    assert parent.info.status == "FINISHED"
    assert parent.data.tags[schema.SWEEP_STATE] == "finished"
    assert parent.data.tags[schema.BEST_RUN_ID] == record.run_id
    assert ("best.lr" in parent.data.params) is (not best_logged)  # written once, when the sweep first ends


def test_stored_config_keeps_no_password(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "postgresql://hpo:s3cret@db:5432/mlflow")
    (tmp_path / "sweep.yaml").write_text(yaml.safe_dump(SWEEP), encoding="utf-8")
    config, _ = load_sweep(tmp_path / "sweep.yaml")
    assert config.tracking_uri is not None and "s3cret" in config.tracking_uri  # the sweep uses it ...
    stored = runner._stored_config(config)
    params = flatten(runner._stored_config(config, exclude_none=True))
    assert "s3cret" not in json.dumps(stored) and "s3cret" not in json.dumps(params, default=str)  # ... keeps none
    assert stored["name"] == "closing" and params["trainer.task"] == "digits"
