"""Your own model or data in the built-in loop: ``trainer.model``, ``trainer.data``, ``trainer.data_file``.

- ``build_model(config, input_shape, n_outputs) -> torch.nn.Module``: ``input_shape`` is one
  example's shape (without the batch dimension); ``n_outputs`` the number of classes
  (classification) or of targets (regression). Return logits / predictions of shape (N, n_outputs).
- ``load_data(config) -> (x_train, y_train, x_val, y_val)``: numpy arrays or tensors; integer (or
  bool) ``y`` means classification with labels 0..k-1, float ``y`` regression (shape (N,) or (N, k)).
  Used as given: scale features yourself.
- A data file: ``.csv`` / ``.parquet`` (``target`` names the column to predict; other columns are the
  features, text columns one-hot encoded) or ``.npz`` (arrays ``X`` and ``y``); split into a
  stratified hold-out of ``val_fraction`` and standardised with the training part's statistics.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from trainers import catalog
from trainers.data import TaskData, from_arrays, infer_kind
from trainers.imports import import_callable

NAME = "custom"


def user_model_and_data(
    user_parts: Mapping[str, str], config: Mapping[str, Any]
) -> tuple[TaskData | None, Callable[..., Any] | None]:
    """The data and the model builder that ``user_parts`` names.

    Args:
        user_parts: ``trainer.model`` / ``data`` / ``data_file`` / ``target`` as given (``Trainer.user_parts``).
        config: the trial's configuration (``load_data`` gets it; ``val_fraction`` splits a data file).

    Returns:
        ``(data, build_model)``, each None where the built-in task provides it.
    """
    data = None
    if "data" in user_parts:
        data = data_from_function(import_callable(user_parts["data"]), config)
    elif "data_file" in user_parts:
        val_fraction = float(config.get("val_fraction", catalog.CATALOG["val_fraction"].default))
        data = data_from_file(Path(user_parts["data_file"]), user_parts.get("target"), val_fraction)
    build = import_callable(user_parts["model"]) if "model" in user_parts else None
    return data, build


def data_from_function(load_data: Callable[..., Any], config: Mapping[str, Any]) -> TaskData:
    """Call ``load_data(config)`` and check what it returns.

    Raises:
        ValueError: not four arrays, or inconsistent lengths or kinds.
    """
    parts = load_data(dict(config))
    if not isinstance(parts, tuple | list) or len(parts) != 4:
        raise ValueError(f"load_data must return (x_train, y_train, x_val, y_val), got {type(parts).__name__}")
    x_train, y_train, x_val, y_val = (torch.as_tensor(np.asarray(p) if not torch.is_tensor(p) else p) for p in parts)
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
    return TaskData(NAME, x_train.float(), y_train, x_val.float(), y_val, n_classes, kind)


def data_from_file(path: Path, target: str | None, val_fraction: float) -> TaskData:
    """Read a .csv / .parquet table (``target`` column) or a .npz archive (``X``, ``y``) and split it.

    Raises:
        KeyError: the target column or an array is missing.
        ValueError: unsupported suffix.
    """
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path) as archive:
            x, y = archive["X"], archive["y"]
    elif suffix in (".csv", ".parquet"):
        import pandas as pd

        table = pd.read_csv(path) if suffix == ".csv" else pd.read_parquet(path)
        if target not in table.columns:
            raise KeyError(f"{path} has no column {target!r}; columns: {', '.join(map(str, table.columns))}")
        features = pd.get_dummies(table.drop(columns=[target]), dtype=np.float32)
        x, y = features.to_numpy(dtype=np.float32), table[target].to_numpy()
    else:
        raise ValueError(f"data files are .csv, .parquet or .npz, got {path}")
    return from_arrays(NAME, x, y, val_fraction, standardise=True, kind=infer_kind(y))
