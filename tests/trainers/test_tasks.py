"""trainers.tasks: the registry (torch-free) and each built-in task's data."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import torch

from trainers.catalog import CATALOG
from trainers.data import TaskData, from_arrays, infer_kind
from trainers.loop import fit
from trainers.tasks import CLASSIFICATION_METRICS, REGRESSION_METRICS, TASKS, load_task

torch.set_num_threads(1)


def test_registry_import_stays_torch_free() -> None:
    code = "import sys, trainers.tasks; sys.exit('torch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], check=False).returncode == 0


def test_registry_declares_kind_metrics_and_models() -> None:
    assert set(TASKS) == {"digits", "mnist1d", "breast_cancer", "diabetes"}
    assert TASKS["diabetes"].kind == "regression" and TASKS["diabetes"].metrics == REGRESSION_METRICS
    assert {"val_precision", "val_recall", "val_f1"} <= set(CLASSIFICATION_METRICS)
    assert not any("accuracy" in m for m in REGRESSION_METRICS)
    assert set(TASKS["mnist1d"].models) == {"mlp", "cnn", "gru", "transformer"}
    for info in TASKS.values():
        assert set(info.models) <= set(CATALOG["model"].choices or ())


@pytest.mark.parametrize(("name", "shape", "sizes", "kind"), [
    ("digits", (1, 8, 8), (1149, 288, 360), "classification"),  # 1,797: 20% test, then 20% of the rest
    ("breast_cancer", (30,), (364, 91, 114), "classification"),
    ("diabetes", (10,), (282, 71, 89), "regression"),
])
def test_tabular_tasks_split_train_val_test(name: str, shape: tuple[int, ...], sizes: tuple[int, int, int],
                                            kind: str) -> None:
    data: TaskData = load_task(name, {})
    assert data.input_shape == shape and data.kind == kind == TASKS[name].kind
    assert data.y_test is not None and (len(data.y_train), len(data.y_val), len(data.y_test)) == sizes
    assert TASKS[name].split_sizes({}) == sizes  # what the batch_size rule and the output assume
    smaller: TaskData = load_task(name, {"val_fraction": 0.5, "test_fraction": 0.1})
    assert abs(len(smaller.y_val) - len(smaller.y_train)) <= 1 and smaller.y_test is not None
    assert TASKS[name].split_sizes({"val_fraction": 0.5, "test_fraction": 0.1}) == (
        len(smaller.y_train), len(smaller.y_val), len(smaller.y_test))


@pytest.mark.parametrize("name", ["breast_cancer", "diabetes"])
def test_standardised_with_training_statistics(name: str) -> None:
    data: TaskData = load_task(name, {})
    assert torch.allclose(data.x_train.mean(0), torch.zeros(data.input_shape), atol=1e-4)
    assert torch.allclose(data.x_train.std(0, unbiased=False), torch.ones(data.input_shape), atol=1e-3)
    assert not torch.allclose(data.x_val.mean(0), torch.zeros(data.input_shape), atol=1e-3)  # val not refitted


def test_from_arrays_infers_kind_and_relabels_classes() -> None:
    import numpy as np

    x = np.random.default_rng(0).normal(size=(40, 3))
    data = from_arrays("t", x, np.array(["a", "b"] * 20), 0.25, standardise=False)
    assert data.kind == "classification" and data.n_classes == 2 and data.y_train.dtype == torch.int64
    assert infer_kind(np.zeros(3)) == "regression" and infer_kind(torch.zeros(3, dtype=torch.long)) == "classification"
    regression = from_arrays("t", x, x[:, 0] * 2.0, 0.25, standardise=True)
    assert regression.kind == "regression" and regression.n_outputs == 1 and regression.n_classes == 0


@pytest.mark.parametrize("hp", [
    {"model": "gru", "hidden": 16, "layers": 1},
    {"model": "transformer", "hidden": 16, "heads": 2, "layers": 1},
    {"model": "cnn", "hidden": 16, "layers": 1, "input_noise": 0.05, "shift": 2},
])
def test_mnist1d_models_train(hp: dict[str, Any]) -> None:
    reports: list[dict[str, float]] = []
    fit({**hp, "epochs": 1, "train_fraction": 0.1}, lambda m, c=None: reports.append(m), task="mnist1d")
    assert reports[0]["val_accuracy"] > 0.1 - 0.05 and "val_f1" in reports[0]
