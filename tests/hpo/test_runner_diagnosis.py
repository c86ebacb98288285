"""A real sweep whose trials are built to overfit and to underfit gets those verdicts in MLflow,
and `hpo diagnose` reads them back from the store (a trial, and the sweep's summary)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from hpo.cli import main
from tracker import schema

# 144 training images (12.5% of digits' 1,149), a wide MLP, 30 epochs: lr 0.01 memorises them (overfits),
# lr 1e-5 barely moves.
REGIMES_YAML = """\
name: regimes
method: grid
metric: {name: val_loss, goal: minimize}
budget: {max_concurrent: 2}
trainer:
  task: digits
  epochs: 30
  options: {optimizer: adam, hidden: 256, layers: 2, train_fraction: 0.125, batch_size: 32}
parameters:
  lr: {values: [0.01, 0.00001]}
"""


@pytest.fixture(scope="module")
def regimes(sweep_runner, tmp_path_factory):
    run = sweep_runner(tmp_path_factory.mktemp("regimes"), REGIMES_YAML)
    assert run.returncode == 0, run.stderr[-3000:]
    return run


def test_verdicts_are_tags_and_artifacts_of_each_trial(regimes):
    result = regimes.result()
    client = MlflowClient(regimes.tracking_uri)
    by_lr = {t["params"]["lr"]: t for t in result["trials"]}
    expected = {0.01: "overfitting", 0.00001: "underfitting"}
    for lr, verdict in expected.items():
        trial = by_lr[lr]
        assert trial["diagnosis"] == verdict
        run = client.get_run(trial["run_id"])
        assert run.data.tags[schema.DIAGNOSIS] == verdict
        assert 0.0 < float(run.data.tags[schema.DIAGNOSIS_CONFIDENCE]) <= 1.0
        artifact = json.loads(Path(client.download_artifacts(trial["run_id"], schema.DIAGNOSIS_ARTIFACT)).read_text())
        assert artifact["verdict"] == verdict and artifact["recommendations"]
    parent = client.get_run(result["parent_run_id"])
    assert "overfitting 50%" in parent.data.tags[schema.DIAGNOSIS_SUMMARY]
    assert "underfitting 50%" in parent.data.tags[schema.DIAGNOSIS_SUMMARY]
    # the MLflow UI filters by it
    found = client.search_runs([parent.info.experiment_id], f"tags.`{schema.DIAGNOSIS}` = 'overfitting'")
    assert [r.info.run_id for r in found] == [by_lr[0.01]["run_id"]]


def test_hpo_diagnose_reads_a_trial_and_the_sweep_from_the_store(regimes, capsys, monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    result = regimes.result()
    overfit = next(t for t in result["trials"] if t["params"]["lr"] == 0.01)
    assert main(["diagnose", overfit["run_id"], "--tracking-uri", regimes.tracking_uri, "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["verdict"] == "overfitting"
    assert {"confidence", "evidence", "recommendations"} <= set(doc)
    assert main(["diagnose", "regimes", "--tracking-uri", regimes.tracking_uri, "--json"]) == 0
    sweep = json.loads(capsys.readouterr().out)
    assert sweep["parent_run_id"] == result["parent_run_id"]
    assert sorted(t["verdict"] for t in sweep["trials"]) == ["overfitting", "underfitting"]
    assert sweep["summary"]["counts"]["overfitting"] == 1
    assert main(["diagnose", "no-such-run", "--tracking-uri", regimes.tracking_uri]) == 2
    assert "no trial run, sweep run or sweep named 'no-such-run'" in capsys.readouterr().err
