"""What ``hpo run`` prints against a real ``mlflow server``, and how MLflow's own UI opens what it wrote.

- MLflow prints "🏃 View run ... / 🧪 View experiment ..." whenever a run on a server ends (one pair per trial):
  none of that may reach our output; our own link to the sweep's run is printed once, at the end.
- MLflow 3's UI opens experiments on its GenAI overview unless told otherwise: our experiments carry
  ``mlflow.experimentKind = custom_model_development`` and our links ask for the model-training view;
  checked in headless Chromium against the real UI.
"""

from __future__ import annotations

import os
import sys
import uuid
from pathlib import Path

import pytest
import test_stores
from test_stores import SWEEP, Server, _hpo

from tracker import schema
from tracker.mlflow_log import (
    EXPERIMENT_KIND,
    EXPERIMENT_KIND_TAG,
    SweepLogger,
    open_client,
    ui_experiment_url,
    ui_run_url,
)

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "dashboard"))
from browser import chromium_binary, screenshot  # noqa: E402

mlflow_server = test_stores.mlflow_server  # the module-scoped real `mlflow server` of test_stores, one for this module

CHATTER = ("View run", "View experiment", "🏃", "🧪")


def _sweep_run(client, experiment: str) -> tuple[str, str]:
    found = client.get_experiment_by_name(experiment)
    assert found is not None, f"no experiment {experiment!r} on the server"
    runs = client.search_runs([found.experiment_id], filter_string=f"tags.`{schema.RUN_KIND}` = '{schema.KIND_SWEEP}'")
    assert len(runs) == 1
    return found.experiment_id, runs[0].info.run_id


@pytest.mark.slow
def test_run_prints_our_link_once_and_none_of_mlflows(tmp_path: Path, mlflow_server: Server) -> None:
    name = f"chatter-{uuid.uuid4().hex[:8]}"
    (tmp_path / "sweep.yaml").write_text(SWEEP.format(name=name, uri=mlflow_server.url))
    run = _hpo(tmp_path, "run", "sweep.yaml", timeout_s=240)
    assert run.returncode == 0, run.stderr[-3000:]
    for chatter in CHATTER:  # MLflow printed a pair per closed run (2 trials + the sweep) to stdout
        assert chatter not in run.stdout and chatter not in run.stderr, chatter
    client = open_client(mlflow_server.url)
    experiment_id, parent = _sweep_run(client, name)
    link = ui_run_url(mlflow_server.url, experiment_id, parent)
    assert link.endswith(f"/#/experiments/{experiment_id}/runs/{parent}?workflowType=machine_learning")
    printed = run.stdout + run.stderr
    assert printed.count(link) == 1 and f"MLflow UI:  {link}" in run.stdout
    assert printed.count("/#/experiments/") == 1  # no other run or experiment link anywhere
    # the experiment the sweep created carries the kind that opens MLflow's UI on the runs table
    assert client.get_experiment(experiment_id).tags.get(EXPERIMENT_KIND_TAG) == EXPERIMENT_KIND


def _start(client, experiment: str) -> SweepLogger:
    return SweepLogger.start(client, experiment=experiment, run_name=experiment, tags={schema.SWEEP: experiment},
                             params={"name": experiment}, artifact_location=None)  # fmt: skip


def test_experiment_kind_on_created_and_reused_experiments(tmp_path: Path) -> None:
    client = open_client(f"sqlite:///{tmp_path / 'mlflow.db'}")
    _start(client, "fresh")
    assert client.get_experiment_by_name("fresh").tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    old = client.create_experiment("older")  # made before hpo tagged experiments
    _start(client, "older")
    assert client.get_experiment(old).tags[EXPERIMENT_KIND_TAG] == EXPERIMENT_KIND
    chosen = client.create_experiment("chosen", tags={EXPERIMENT_KIND_TAG: "genai_development"})
    _start(client, "chosen")  # a kind somebody set in the UI stays
    assert client.get_experiment(chosen).tags[EXPERIMENT_KIND_TAG] == "genai_development"


def test_run_links_are_silenced_through_mlflows_switch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", raising=False)
    _start(open_client(f"sqlite:///{tmp_path / 'mlflow.db'}"), "quiet")
    assert os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "true"
    monkeypatch.setenv("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "false")  # a user who wants them keeps them
    _start(open_client(f"sqlite:///{tmp_path / 'mlflow.db'}"), "loud")
    assert os.environ["MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT"] == "false"


# The runs table has rendered its rows (a row per run) and no skeleton is left.
RUNS_READY_JS = "document.body.innerText.includes('matching runs')"
RUN_READY_JS = "document.body.innerText.includes('Parameters') && document.body.innerText.includes('Metrics')"


@pytest.mark.skipif(chromium_binary() is None, reason="chromium is not installed (apt-get install -y chromium)")
def test_mlflow_ui_opens_our_experiment_on_the_runs_table(tmp_path: Path, mlflow_server: Server) -> None:
    name = f"kind-{uuid.uuid4().hex[:8]}"
    client = open_client(mlflow_server.url)
    logger = _start(client, name)
    for number in range(2):
        trial = logger.start_trial(f"{name}-{number:03d}", {"lr": 0.1 / (number + 1)}, {})
        logger.log_epoch(trial, {"val_accuracy": 0.5 + number / 10}, step=1, timestamp_ms=1_000)
        logger.finish_trial(trial, "FINISHED", {}, {"best_val_accuracy": 0.5 + number / 10})
    logger.finish_sweep("FINISHED", {}, {})
    experiment_id, parent = _sweep_run(client, name)

    table = screenshot(ui_experiment_url(mlflow_server.url, experiment_id), RUNS_READY_JS, timeout_s=90)
    (tmp_path / "experiment.png").write_bytes(table.png)
    assert table.ready, f"the runs table never appeared; page text:\n{table.text[:2000]}"
    assert "Runs" in table.text and name in table.text  # the sweep's run, its trials nested below
    for genai in ("Usage", "Tool calls", "Evaluation runs", "No data available for the selected time range"):
        assert genai not in table.text, genai

    run_page = screenshot(ui_run_url(mlflow_server.url, experiment_id, parent), RUN_READY_JS, timeout_s=90)
    (tmp_path / "run.png").write_bytes(run_page.png)
    assert run_page.ready, f"the run page never appeared; page text:\n{run_page.text[:2000]}"
    assert name in run_page.text and "Evaluation runs" not in run_page.text  # the GenAI sidebar
