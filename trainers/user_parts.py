"""Your own model or data in the built-in loop: ``trainer.model``, ``trainer.data``, ``trainer.data_file``.

- ``build_model(config, input_shape, n_outputs) -> torch.nn.Module``: ``input_shape`` is one
  example's shape (without the batch dimension); ``n_outputs`` the number of classes
  (classification) or of targets (regression). Return logits / predictions of shape (N, n_outputs).
- ``load_data(config) -> (x_train, y_train, x_val, y_val[, x_test, y_test])``: numpy arrays or tensors
  (or anything ``numpy.asarray`` reads); integer (or bool) ``y`` means classification with labels
  0..k-1, float ``y`` regression (shape (N,) or (N, k)). Used as given: scale features yourself. The
  test arrays are not read during the search: they are converted on first use, for the winner.
- A data file: ``.csv`` / ``.parquet`` (``target`` names the column to predict; other columns are the
  features, text columns one-hot encoded) or ``.npz`` (arrays ``X`` and ``y``); a stratified test share
  of ``test_fraction`` (when set) or a separate ``test_file`` of the same layout, then a stratified
  hold-out of ``val_fraction``, all fixed by ``split_seed``; standardised with the training part's
  statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainers.data import HeldOut, TaskData, from_arrays, infer_kind, split_settings
from trainers.imports import import_callable

NAME = "custom"


def user_model_and_data(
    user_parts: Mapping[str, Any], config: Mapping[str, Any]
) -> tuple[TaskData | None, Callable[..., Any] | None]:
    """The data and the model builder that ``user_parts`` names.

    Args:
        user_parts: ``trainer.model`` / ``data`` / ``data_file`` / ``target`` / ``test_file`` as given
            (``Trainer.user_parts``).
        config: the trial's configuration (``load_data`` gets it; ``val_fraction``, ``test_fraction`` and
            ``split_seed`` split a data file).

    Returns:
        ``(data, build_model)``, each None where the built-in task provides it.
    """
    data = None
    if "data" in user_parts:
        data = data_from_function(import_callable(user_parts["data"]), config)
    elif "data_file" in user_parts:
        val_fraction, test_fraction, split_seed = split_settings(config, test_default=None)
        data = data_from_file(Path(user_parts["data_file"]), user_parts.get("target"), val_fraction,
                              test_fraction=test_fraction, split_seed=split_seed,
                              test_file=Path(user_parts["test_file"]) if "test_file" in user_parts else None)
    build = import_callable(user_parts["model"]) if "model" in user_parts else None
    return data, build


def data_from_function(load_data: Callable[..., Any], config: Mapping[str, Any]) -> TaskData:
    """Call ``load_data(config)`` and check what it returns; test arrays are kept unread until first use.

    Raises:
        ValueError: not four or six arrays, or inconsistent lengths or kinds.
    """
    parts = load_data(dict(config))
    if not isinstance(parts, tuple | list) or len(parts) not in (4, 6):
        got = f"{len(parts)} values" if isinstance(parts, tuple | list) else type(parts).__name__
        raise ValueError("load_data must return (x_train, y_train, x_val, y_val) or (x_train, y_train, x_val, "
                         f"y_val, x_test, y_test), got {got}")
    x_train, y_train, x_val, y_val = (_as_tensor(p) for p in parts[:4])
    for x, y, split in ((x_train, y_train, "train"), (x_val, y_val, "val")):
        if len(x) != len(y):
            raise ValueError(f"load_data: x_{split} has {len(x)} rows but y_{split} has {len(y)}")
    kind = infer_kind(y_train)
    if infer_kind(y_val) != kind:
        raise ValueError(f"load_data: y_train is {y_train.dtype} but y_val is {y_val.dtype}; use one kind")
    if kind == "classification":
        y_train, y_val = y_train.long(), y_val.long()
        n_classes = int(max(y_train.max(), y_val.max())) + 1
    else:
        y_train, y_val, n_classes = y_train.float(), y_val.float(), 0
    test = _test_split(parts[4], parts[5], kind) if len(parts) == 6 else None
    return TaskData(NAME, x_train.float(), y_train, x_val.float(), y_val, n_classes, kind, test)


def _as_tensor(part: Any) -> torch.Tensor:
    return part if torch.is_tensor(part) else torch.as_tensor(np.asarray(part))


def _test_split(x_test: Any, y_test: Any, kind: str) -> HeldOut:
    """``load_data``'s test arrays, converted (and checked) only when first read."""
    return HeldOut(partial(_test_tensors, x_test, y_test, kind))


def _test_tensors(x_test: Any, y_test: Any, kind: str) -> tuple[torch.Tensor, torch.Tensor]:
    x, y = _as_tensor(x_test), _as_tensor(y_test)
    if len(x) != len(y):
        raise ValueError(f"load_data: x_test has {len(x)} rows but y_test has {len(y)}")
    if infer_kind(y) != kind:
        raise ValueError(f"load_data: y_test is {y.dtype} but the training labels are {kind}; use one kind")
    return x.float(), (y.long() if kind == "classification" else y.float())


def data_from_file(path: Path, target: str | None, val_fraction: float, *, test_fraction: float | None = None,
                   split_seed: int = 0, test_file: Path | None = None) -> TaskData:
    """Read a .csv / .parquet table (``target`` column) or a .npz archive (``X``, ``y``) and split it.

    ``test_file`` (same layout) is read on first use of the test split only; ``test_fraction`` holds out
    a stratified share of ``path`` instead; with neither the data has no test split.

    Raises:
        KeyError: the target column or an array is missing.
        ValueError: unsupported suffix.
    """
    x, y, columns = _read_table(path, target)
    read_test = partial(_read_test, test_file, target, columns) if test_file is not None else None
    return from_arrays(NAME, x, y, val_fraction, standardise=True, kind=infer_kind(y), split_seed=split_seed,
                       test_fraction=test_fraction, test_rows=read_test)


def _read_test(path: Path, target: str | None, columns: list[str]) -> tuple[np.ndarray, np.ndarray]:
    x_test, y_test, _ = _read_table(path, target, columns)
    return x_test, y_test


def _read_table(path: Path, target: str | None,
                columns: list[str] | None = None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Features, targets and feature column names of a data file; ``columns``: lay the features out like these
    (a test file's one-hot columns follow the training file's).

    Raises:
        KeyError: the target column or an array is missing.
        ValueError: unsupported suffix.
    """
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path) as archive:
            return archive["X"], archive["y"], []
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"data files are .csv, .parquet or .npz, got {path}")
    import pandas as pd

    table = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
    if target not in table.columns:
        raise KeyError(f"{path} has no column {target!r}; columns: {', '.join(map(str, table.columns))}")
    features = pd.get_dummies(table.drop(columns=[target]), dtype=np.float32)
    if columns is not None:
        features = features.reindex(columns=columns, fill_value=0.0)
    return features.to_numpy(dtype=np.float32), table[target].to_numpy(), [str(c) for c in features.columns]
