"""Built-in tasks: what each one reports, without importing torch until a task is loaded."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import import_module
from typing import Any, Literal

from trainers.catalog import DEFAULT_TEST_FRACTION, MODELS

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
    n_samples: int = 0  # rows before any split (mnist1d: its official training sequences)
    fixed_train: int | None = None  # an official split's training size (val_fraction does not apply)
    official_test: bool = False  # the test split is the dataset's own (test_fraction does not apply)
    test_samples: int = 0  # the official test split's size

    def train_size(self, config: Mapping[str, Any]) -> int:
        """Rows a trial trains on under the settings ``config`` (hold-out or k-fold, then train_fraction)."""
        return self.split_sizes(config)[0]

    def split_sizes(self, config: Mapping[str, Any]) -> tuple[int, int, int]:
        """Rows of the training (after ``train_fraction``), validation and test splits under ``config``, as
        the task's loader makes them (scikit-learn rounds a held-out share up); with ``folds``, one fold's."""
        if self.official_test:
            labelled, test = self.n_samples, self.test_samples
        else:
            test = math.ceil(self.n_samples * float(config.get("test_fraction", DEFAULT_TEST_FRACTION)))
            labelled = self.n_samples - test
        folds = int(config.get("folds") or 0)
        if folds >= 2:
            val = labelled // folds
        elif self.fixed_train is not None:
            val = labelled - self.fixed_train
        else:
            val = math.ceil(labelled * float(config.get("val_fraction", 0.2)))
        train = labelled - val
        fraction = float(config.get("train_fraction", 1.0))
        if fraction < 1.0:  # TaskData.subset
            train = max(self.n_classes, int(round(train * fraction)))
        return max(1, train), val, test


TASKS: dict[str, TaskInfo] = {
    info.name: info
    for info in (
        TaskInfo("digits", "trainers.tasks.digits", CLASSIFICATION_METRICS, ("mlp", "cnn"), 10,
                 "scikit-learn's 8x8 handwritten digits (1,797 images, 10 classes)", n_samples=1797),
        TaskInfo("mnist1d", "trainers.tasks.mnist1d", CLASSIFICATION_METRICS, MODELS, 10,
                 "MNIST-1D (Greydanus 2020), generated offline; 3,600/400 of the official 4,000 training "
                 "sequences for training/validation, the official 1,000 for test",
                 n_samples=4000, fixed_train=3600, official_test=True, test_samples=1000),
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
