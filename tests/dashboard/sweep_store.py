"""Builds a real MLflow SQLite store in the layout ``hpo run`` writes (see ``tracker/schema.py``).

Three sweeps:
- ``demo`` (finished, maximize val_accuracy): 8 trials with realistic curves (good fits,
  overfits, an underfit, a diverged one), one early-stopped by ASHA, one FAILED, plus a ninth
  trial deleted in MLflow afterwards (must be invisible).
- ``broken`` (failed): every trial FAILED with an error tag.
- ``live`` (running): one finished trial and one still RUNNING, without summary metrics.

Written through ``MlflowClient`` only, so the store is exactly what MLflow itself would read.
The lead's session fixture running a real ``hpo run`` can replace this one: the tests only rely
on the ``SweepStore`` fields.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tracker import schema

EPOCHS = 12


@dataclass
class SweepStore:
    uri: str
    root: Path
    demo: str = ""  # parent run ids
    broken: str = ""
    live: str = ""
    trials: dict[int, str] = field(default_factory=dict)  # demo trial number -> run id
    deleted: str = ""  # a demo trial run deleted in MLflow
    best_value: float = 0.0  # demo's best val_accuracy
    best_trial: int = -1
    running_trial: str = ""  # the live sweep's RUNNING trial


# trial number -> (params, curve shape, final status, diagnosis verdict)
DEMO_TRIALS: list[tuple[dict[str, Any], str, str, str | None]] = [
    ({"lr": 0.01, "batch_size": 64, "optimizer": "adam", "dropout": 0.1}, "good", "FINISHED", "good_fit"),
    ({"lr": 0.003, "batch_size": 32, "optimizer": "adam", "dropout": 0.0}, "overfit", "FINISHED", "overfitting"),
    (
        {"lr": 0.05, "batch_size": 128, "optimizer": "sgd", "momentum": 0.9, "dropout": 0.0},
        "overfit",
        "FINISHED",
        "overfitting",
    ),  # fmt: skip
    (
        {"lr": 0.0001, "batch_size": 256, "optimizer": "sgd", "momentum": 0.5, "dropout": 0.3},
        "underfit",
        "FINISHED",
        "underfitting",
    ),  # fmt: skip
    (
        {"lr": 0.0003, "batch_size": 256, "optimizer": "sgd", "momentum": 0.0, "dropout": 0.5},
        "underfit",
        "KILLED",
        "underfitting",
    ),  # fmt: skip
    ({"lr": 0.9, "batch_size": 32, "optimizer": "adam", "dropout": 0.2}, "failed", "FAILED", None),
    (
        {"lr": 0.5, "batch_size": 64, "optimizer": "sgd", "momentum": 0.99, "dropout": 0.1},
        "diverged",
        "FINISHED",
        "diverged",
    ),  # fmt: skip
    ({"lr": 0.02, "batch_size": 64, "optimizer": "adam", "dropout": 0.2}, "great", "FINISHED", "good_fit"),
]


def curves(shape: str, epochs: int = EPOCHS, seed: int = 0) -> dict[str, list[float]]:
    """Per-epoch train/val loss and accuracy shaped like the named fit."""
    rng = np.random.default_rng(seed)
    t = np.arange(1, epochs + 1, dtype=float)
    noise = rng.normal(0, 0.01, epochs)
    if shape in ("good", "great"):
        floor = 0.25 if shape == "good" else 0.18
        train = floor + 2.0 * np.exp(-t / 2.5)
        val = train + 0.05 + noise
    elif shape == "overfit":
        train = 0.02 + 2.2 * np.exp(-t / 2.0)
        val = 0.45 + 1.8 * np.exp(-t / 2.0) + 0.06 * np.maximum(0, t - 5) ** 1.3 + noise
    elif shape == "underfit":
        train = 1.6 + 0.7 * np.exp(-t / 4.0)
        val = train + 0.02 + noise
    elif shape == "diverged":
        train = 2.3 * np.exp(t / 3.0)
        val = train * 1.1
    else:  # failed after two epochs
        train = 2.3 - 0.1 * t
        val = train + 0.05
    to_acc = lambda loss: np.clip(1.0 - loss / 2.5, 0.05, 0.995)  # noqa: E731
    return {
        "train_loss": train.tolist(),
        "val_loss": val.tolist(),
        "train_accuracy": to_acc(train).tolist(),
        "val_accuracy": to_acc(val).tolist(),
        "lr": [0.01 * 0.9**i for i in range(epochs)],
        "epoch_seconds": (1.5 + rng.random(epochs)).tolist(),
    }


def build_store(root: Path) -> SweepStore:
    """Fill ``root/mlflow.db`` (+ ``root/artifacts``) with the three sweeps; returns their ids."""
    from mlflow.tracking import MlflowClient

    root.mkdir(parents=True, exist_ok=True)
    out = SweepStore(uri=f"sqlite:///{root / 'mlflow.db'}", root=root)
    client = MlflowClient(out.uri)
    _build_demo(client, root, out)
    _build_broken(client, root, out)
    _build_live(client, root, out)
    return out


def build_empty_store(root: Path) -> str:
    """An MLflow store with its tables and the Default experiment, but no runs."""
    from mlflow.tracking import MlflowClient

    root.mkdir(parents=True, exist_ok=True)
    uri = f"sqlite:///{root / 'mlflow.db'}"
    MlflowClient(uri).search_experiments(max_results=1)  # creates the schema
    return uri


def _experiment(client: Any, name: str, root: Path) -> str:
    return client.create_experiment(name, artifact_location=str(root / "artifacts" / name))


def _parent(client: Any, exp: str, name: str, metric: str, state: str, total: int, goal: str = "maximize") -> str:
    tags = {
        **schema.kind_tags(schema.KIND_SWEEP),
        schema.SWEEP: name,
        schema.METHOD: "bayes",
        schema.SAMPLER: "tpe",
        schema.METRIC: metric,
        schema.GOAL: goal,
        schema.SEED: "0",
        schema.SWEEP_STATE: state,
        schema.TRIALS_TOTAL: str(total),
    }
    run = client.create_run(exp, run_name=name, tags=tags)
    params = {"name": name, "metric": metric, "goal": goal, "num_samples": str(total)}
    from mlflow.entities import Param

    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in params.items()])
    return run.info.run_id


def _trial(client: Any, exp: str, parent: str, number: int, params: dict[str, Any]) -> str:
    from mlflow.entities import Param

    tags = {
        schema.PARENT_RUN_ID: parent,
        **schema.kind_tags(schema.KIND_TRIAL),
        schema.TRIAL_ID: f"trial_{number:05d}",
        schema.TRIAL_NUMBER: str(number),
    }
    run = client.create_run(exp, run_name=f"trial-{number}", tags=tags)
    plain = {k: ("true" if v is True else "false" if v is False else str(v)) for k, v in params.items()}
    client.log_batch(run.info.run_id, params=[Param(k, v) for k, v in plain.items()])
    return run.info.run_id


def _log_curves(client: Any, run_id: str, data: dict[str, list[float]], epochs: int) -> None:
    from mlflow.entities import Metric

    now = int(time.time() * 1000)
    points = [
        Metric(key, float(values[i]), now + i, i + 1)
        for key, values in data.items()
        for i in range(epochs)
        if math.isfinite(values[i])
    ]
    client.log_batch(run_id, metrics=points)


def _finish(client: Any, run_id: str, status: str, tags: dict[str, str], metrics: dict[str, float]) -> None:
    from mlflow.entities import Metric, RunTag

    now = int(time.time() * 1000)
    client.log_batch(
        run_id,
        metrics=[Metric(k, float(v), now, 0) for k, v in metrics.items()],
        tags=[RunTag(k, v) for k, v in tags.items()],
    )
    client.set_terminated(run_id, status=status)


def _build_demo(client: Any, root: Path, out: SweepStore) -> None:
    exp = _experiment(client, "demo", root)
    out.demo = parent = _parent(client, exp, "demo", "val_accuracy", "finished", len(DEMO_TRIALS))
    best = (-1.0, -1)
    for number, (params, shape, status, verdict) in enumerate(DEMO_TRIALS):
        run_id = out.trials[number] = _trial(client, exp, parent, number, params)
        epochs = {"failed": 2, "diverged": 6}.get(shape, 4 if status == "KILLED" else EPOCHS)
        data = curves(shape, EPOCHS, seed=number)
        _log_curves(client, run_id, data, epochs)
        tags: dict[str, str] = {}
        metrics: dict[str, float] = {}
        if status == "FAILED":
            tags[schema.ERROR] = "RuntimeError: loss is NaN at epoch 3 (lr=0.9 too large)"
        else:
            acc = data["val_accuracy"][:epochs]
            metrics = {"best_val_accuracy": max(acc), "final_val_accuracy": acc[-1], "epochs_run": epochs}
            best = max(best, (max(acc), number))
        if status == "KILLED":
            tags |= {schema.EARLY_STOPPED: "true", schema.STOPPED_BY: "asha"}
        if verdict:
            tags |= {schema.DIAGNOSIS: verdict, schema.DIAGNOSIS_CONFIDENCE: "0.8"}
            diagnosis = {
                "verdict": verdict,
                "confidence": 0.8,
                "evidence": {"val_loss_min_epoch": int(np.argmin(data["val_loss"][:epochs])) + 1},
                "recommendations": [f"fixture advice for {verdict}"],
                "findings": [],
                "summary": f"{verdict} (fixture)",
            }
            client.log_text(run_id, json.dumps(diagnosis), schema.DIAGNOSIS_ARTIFACT)
        _finish(client, run_id, status, tags, metrics)
    out.best_value, out.best_trial = best
    # A ninth trial, deleted in MLflow's UI afterwards: it must not show anywhere.
    out.deleted = _trial(client, exp, parent, 8, {"lr": 0.1, "batch_size": 64, "optimizer": "adam"})
    _log_curves(client, out.deleted, curves("good", seed=8), EPOCHS)
    _finish(client, out.deleted, "FINISHED", {}, {"best_val_accuracy": 0.999})
    client.delete_run(out.deleted)
    summary = {"counts": {"good_fit": 2, "overfitting": 2, "underfitting": 2, "diverged": 1}, "drivers": []}
    client.log_text(parent, json.dumps(summary), schema.DIAGNOSIS_SUMMARY_ARTIFACT)
    _finish(
        client,
        parent,
        "FINISHED",
        {schema.BEST_RUN_ID: out.trials[out.best_trial], schema.DIAGNOSIS_SUMMARY: "2 of 7 trials overfit"},
        {"best_val_accuracy": out.best_value},
    )


def _build_broken(client: Any, root: Path, out: SweepStore) -> None:
    exp = _experiment(client, "broken", root)
    out.broken = parent = _parent(client, exp, "broken", "val_loss", "failed", 3, goal="minimize")
    for number in range(3):
        run_id = _trial(client, exp, parent, number, {"lr": 10.0**-number, "batch_size": 32})
        _finish(client, run_id, "FAILED", {schema.ERROR: "ImportError: no module named 'mytask'"}, {})
    _finish(client, parent, "FAILED", {}, {})


def _build_live(client: Any, root: Path, out: SweepStore) -> None:
    exp = _experiment(client, "live", root)
    out.live = parent = _parent(client, exp, "live", "val_accuracy", "running", 4)
    done = _trial(client, exp, parent, 0, {"lr": 0.01, "batch_size": 64})
    data = curves("good", seed=20)
    _log_curves(client, done, data, EPOCHS)
    _finish(client, done, "FINISHED", {schema.DIAGNOSIS: "good_fit"}, {
        "best_val_accuracy": max(data["val_accuracy"]), "epochs_run": EPOCHS})  # fmt: skip
    out.running_trial = _trial(client, exp, parent, 1, {"lr": 0.03, "batch_size": 128})
    _log_curves(client, out.running_trial, curves("overfit", seed=21), 3)  # still RUNNING, no summary yet
