"""The small sweep several test modules run, and reading a finished sweep back from the MLflow store
through ``MlflowClient`` like any user would."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tracker import schema

# A grid of 6 trials, run one at a time so the order (and so ASHA's decisions) is fixed by the seed:
# - sgd lr 0.05 with weight_decay 1e4 diverges in epoch 1 (weights grow x500 per step): FAILED;
# - the lr 1e-6 trials stay at chance, as does sgd lr 0.05 in its first epochs: ASHA (rungs at epochs 2
#   and 4) stops all four early; adam lr 0.05 runs its 6 epochs;
# - momentum and weight_decay exist only on the sgd trials.
SMALL_SWEEP_YAML = """\
name: small
method: grid
metric: {name: val_accuracy, goal: maximize}
budget: {max_concurrent: 1}
early_stop: {type: asha, grace_epochs: 2, reduction_factor: 2}
seed: 0
trainer: {task: digits, epochs: 6, options: {hidden: 32, train_fraction: 0.3}}
parameters:
  optimizer: {values: [sgd, adam]}
  lr: {values: [1e-6, 0.05]}
  momentum: {values: [0.9], when: {optimizer: sgd}}
  weight_decay: {values: [0.0, 1e4], when: {optimizer: sgd}}
"""

SUMMARY_METRICS = (schema.EPOCHS_RUN,)


@dataclass
class StoredTrial:
    run_id: str
    status: str
    start_time_ms: int
    params: dict[str, str]
    tags: dict[str, str]
    metrics: dict[str, float]  # latest value per key
    points: dict[str, list[tuple[int, int]]]  # key -> [(step, timestamp_ms)] in logged order


def client(uri: str) -> Any:
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=uri)


def stored_trials(uri: str, parent_run_id: str) -> list[StoredTrial]:
    """Every child run of the sweep, in trial-number order, with each metric's full history."""
    mlflow = client(uri)
    parent = mlflow.get_run(parent_run_id)
    runs = mlflow.search_runs(
        [parent.info.experiment_id], filter_string=f"tags.`{schema.PARENT_RUN_ID}` = '{parent_run_id}'",
        max_results=1000,
    )
    trials = []
    for run in runs:
        points = {
            key: [(m.step, m.timestamp) for m in mlflow.get_metric_history(run.info.run_id, key)]
            for key in run.data.metrics
        }
        trials.append(StoredTrial(run.info.run_id, run.info.status, run.info.start_time, dict(run.data.params),
                                  dict(run.data.tags), dict(run.data.metrics), points))
    return sorted(trials, key=lambda t: int(t.tags[schema.TRIAL_NUMBER]))


def all_runs(uri: str) -> list[Any]:
    """Every run in every experiment of the store."""
    mlflow = client(uri)
    ids = [e.experiment_id for e in mlflow.search_experiments()]
    return list(mlflow.search_runs(ids, max_results=1000))
