"""Built-in tasks: what each one reports, without importing torch until a task is loaded."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import import_module
from typing import Any, Literal

from trainers.catalog import MODELS

__all__ = ["TASKS", "TaskInfo", "load_task", "CLASSIFICATION_METRICS", "REGRESSION_METRICS", "COST_METRICS"]

# What the built-in loop measures of the model itself, once per trial and reported with every epoch
# (trainers.cost): parameter count, serialized state-dict size, forward FLOPs per sample, latency.
COST_METRICS = ("params", "size_mb", "flops", "latency_ms")
CLASSIFICATION_METRICS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "val_precision", "val_recall",
                          "val_f1", "lr", "epoch_seconds", *COST_METRICS)
REGRESSION_METRICS = ("train_loss", "val_loss", "val_mae", "val_r2", "lr", "epoch_seconds", *COST_METRICS)


@dataclass(frozen=True)
class TaskInfo:
    """What a sweep may rely on before the task's data is loaded.

    Attributes:
        name: the task's name in ``trainer.task``.
        module: module with ``load(options) -> TaskData``.
        metrics: what the trainer reports every epoch (with ``folds``: also ``<name>_std``).
        models: architectures the ``model`` setting can pick.
        n_classes: for chance-level loss in the diagnosis; 0 for regression.
        description: one line for docs.
        kind: classification (cross-entropy, accuracy, macro precision/recall/F1) or regression
            (MSE, MAE, R^2).
    """

    name: str
    module: str
    metrics: tuple[str, ...]
    models: tuple[str, ...]
    n_classes: int
    description: str
    kind: Literal["classification", "regression"] = "classification"
    n_samples: int = 0  # rows before any split
    fixed_train: int | None = None  # an official split's training size (val_fraction does not apply)

    def train_size(self, config: Mapping[str, Any]) -> int:
        """Rows a trial trains on under the settings ``config`` (hold-out or k-fold, then train_fraction)."""
        folds = int(config.get("folds") or 0)
        if folds >= 2:
            rows = self.n_samples * (folds - 1) // folds
        elif self.fixed_train is not None:
            rows = self.fixed_train
        else:
            rows = int(self.n_samples * (1 - float(config.get("val_fraction", 0.2))))
        return max(1, int(round(rows * float(config.get("train_fraction", 1.0)))))

    def val_size(self, config: Mapping[str, Any]) -> int:
        """Rows each validation score of a trial is computed on under ``config``: the official split's test
        part, one of ``folds`` shares (the smallest), or the hold-out of ``val_fraction`` (rounded up, as
        scikit-learn's split rounds it)."""
        folds = int(config.get("folds") or 0)
        if folds >= 2:
            return self.n_samples // folds
        if self.fixed_train is not None:
            return self.n_samples - self.fixed_train
        return min(self.n_samples - 1, math.ceil(self.n_samples * float(config.get("val_fraction", 0.2))))


TASKS: dict[str, TaskInfo] = {
    info.name: info
    for info in (
        TaskInfo("digits", "trainers.tasks.digits", CLASSIFICATION_METRICS, ("mlp", "cnn"), 10,
                 "scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes)", n_samples=1797),
        TaskInfo("mnist1d", "trainers.tasks.mnist1d", CLASSIFICATION_METRICS, MODELS, 10,
                 "MNIST-1D (Greydanus 2020), generated offline; official 4,000/1,000 split",
                 n_samples=5000, fixed_train=4000),
        TaskInfo("breast_cancer", "trainers.tasks.breast_cancer", CLASSIFICATION_METRICS, ("mlp",), 2,
                 "scikit-learn's Wisconsin breast cancer (569 rows, 30 features, binary), standardised",
                 n_samples=569),
        TaskInfo("diabetes", "trainers.tasks.diabetes", REGRESSION_METRICS, ("mlp",), 0,
                 "scikit-learn's diabetes progression (442 rows, 10 features, regression), standardised",
                 kind="regression", n_samples=442),
    )
}


def load_task(name: str, options: dict[str, Any]) -> Any:
    """Import and load a built-in task's data (imports torch).

    Raises:
        KeyError: unknown task name.
    """
    return import_module(TASKS[name].module).load(options)
