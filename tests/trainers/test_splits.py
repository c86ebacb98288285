"""Train / validation / test: sizes, stratification, determinism by the sweep's seed, a test split that
stays unread during training, and scoring a checkpoint on it (trainers.evaluate)."""

from __future__ import annotations

import pickle
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from trainers.catalog import defaults
from trainers.data import TaskData, from_arrays
from trainers.evaluate import score_checkpoint
from trainers.loop import fit
from trainers.models import build_model
from trainers.tasks import TASKS, load_task
from trainers.tasks.mnist1d import _arrays as mnist1d_arrays
from trainers.user_parts import data_from_function

torch.set_num_threads(1)


def test_mnist1d_validation_comes_out_of_the_official_training_split() -> None:
    data: TaskData = load_task("mnist1d", {"split_seed": 0})
    assert data.y_test is not None
    sizes = (len(data.y_train), len(data.y_val), len(data.y_test))
    assert sizes == (3600, 400, 1000) == TASKS["mnist1d"].split_sizes({})
    official = mnist1d_arrays()
    assert torch.equal(data.y_test, torch.from_numpy(official["y_test"].astype(np.int64)))  # the paper's test set
    share = Counter(official["y"].tolist())
    val = Counter(data.y_val.tolist())
    assert all(abs(val[c] - 400 * k / 4000) < 1 for c, k in share.items())  # stratified: each class its share
    pooled = np.sort(np.concatenate([data.x_train[:, 0, 0].numpy(), data.x_val[:, 0, 0].numpy()]))
    assert np.array_equal(pooled, np.sort(official["x"][:, 0].astype(np.float32)))  # train + val = the 4,000


def test_split_is_fixed_by_the_split_seed_not_the_trial_seed() -> None:
    a, b = load_task("digits", {"split_seed": 3, "seed": 0}), load_task("digits", {"split_seed": 3, "seed": 9})
    c = load_task("digits", {"split_seed": 4, "seed": 0})
    assert torch.equal(a.y_val, b.y_val) and torch.equal(a.x_test, b.x_test)  # type: ignore[arg-type]
    assert not torch.equal(a.x_val, c.x_val) and not torch.equal(a.x_test, c.x_test)  # type: ignore[arg-type]
    m0, m1 = load_task("mnist1d", {"split_seed": 0}), load_task("mnist1d", {"split_seed": 1})
    assert not torch.equal(m0.x_val, m1.x_val) and torch.equal(m0.x_test, m1.x_test)  # type: ignore[arg-type]


def test_three_way_split_is_disjoint_stratified_and_complete() -> None:
    rows = np.arange(1000, dtype=np.float32)[:, None]  # each row names itself
    labels = np.repeat([0, 1, 2, 3], [400, 300, 200, 100])
    data = from_arrays("t", rows, labels, 0.25, standardise=False, split_seed=7, test_fraction=0.2)
    assert data.x_test is not None and data.y_test is not None
    parts = [data.x_train[:, 0], data.x_val[:, 0], data.x_test[:, 0]]
    assert [len(p) for p in parts] == [600, 200, 200]
    assert sorted(torch.cat(parts).tolist()) == list(range(1000))  # every row once
    assert Counter(data.y_test.tolist()) == {0: 80, 1: 60, 2: 40, 3: 20}
    folds = data.folds(4, 7)  # k-fold pools training and validation only
    assert all(sorted(torch.cat([f.x_train, f.x_val])[:, 0].tolist()) == sorted(torch.cat(parts[:2]).tolist())
               for f in folds)
    assert all(f.test is data.test for f in folds)
    copy = pickle.loads(pickle.dumps(folds[0]))  # DDP workers and Ray get the data with its test split unread
    assert copy.y_test is not None and torch.equal(copy.y_test, data.y_test)


def test_load_data_test_arrays_stay_unread_until_scored() -> None:
    reads: list[str] = []

    class Recorded:  # an array-like that notes every time its values are read
        def __init__(self, values: np.ndarray) -> None:
            self.values = values

        def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
            reads.append("read")
            return self.values

    x = np.random.default_rng(0).normal(size=(60, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    test = (Recorded(x[:20]), Recorded(y[:20]))
    data = data_from_function(lambda config: (x[20:50], y[20:50], x[50:], y[50:], *test), {})
    fit({"epochs": 1, "hidden": 4}, lambda m, c=None: None, data=data)
    assert reads == []
    assert data.y_test is not None and torch.equal(data.y_test, torch.from_numpy(y[:20]))
    assert len(reads) == 2  # x_test and y_test, once each


def test_score_checkpoint_recomputes_validation_and_scores_test(tmp_path: Path) -> None:
    config = {"hidden": 16, "epochs": 2, "lr": 0.01, "split_seed": 2, "seed": 5}
    reports: list[tuple[dict[str, float], Any]] = []
    fit(config, lambda m, c=None: reports.append((m, c)), task="breast_cancer")
    metrics, checkpoint = next((m, c) for m, c in reversed(reports) if c is not None)
    torch.save(checkpoint, tmp_path / "model.pt")
    val = score_checkpoint(config, tmp_path, task="breast_cancer", user_parts=None, split="val")
    assert val == pytest.approx({k: v for k, v in metrics.items() if k.startswith("val_")}, rel=1e-6)
    test = score_checkpoint(config, tmp_path, task="breast_cancer", user_parts=None)
    assert set(test) == {"test_" + k[len("val_"):] for k in val}
    data = load_task("breast_cancer", config)
    # the same accuracy by hand: argmax of the reloaded model on the test rows
    model = build_model("mlp", data.input_shape, data.n_outputs, {**defaults(), **config})
    model.load_state_dict(torch.load(tmp_path / "model.pt", weights_only=True)["model_state"])
    with torch.no_grad():
        predicted = model.eval()(data.x_test).argmax(1)
    assert test["test_accuracy"] == pytest.approx(float((predicted == data.y_test).float().mean()))


def test_score_checkpoint_is_empty_without_a_test_split(tmp_path: Path) -> None:
    x = np.random.default_rng(1).normal(size=(40, 3)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    np.savez(tmp_path / "d.npz", X=x, y=y)
    config = {"hidden": 4, "epochs": 1}
    reports: list[Any] = []
    parts = {"data_file": str(tmp_path / "d.npz")}
    from trainers.user_parts import user_model_and_data

    data, _ = user_model_and_data(parts, config)
    assert data is not None and data.test is None
    fit(config, lambda m, c=None: reports.append(c), data=data)
    torch.save(next(c for c in reports if c), tmp_path / "model.pt")
    assert score_checkpoint(config, tmp_path, task=None, user_parts=parts) == {}
    with_test = score_checkpoint({**config, "test_fraction": 0.25}, tmp_path, task=None, user_parts=parts)
    assert set(with_test) >= {"test_accuracy", "test_loss"}
