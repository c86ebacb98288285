"""Your own data for the built-in loop: ``trainer.data: "winelab.data:load_data"``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def load_data(config: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """scikit-learn's wine data, 75/25 stratified, standardised with the training part's statistics.

    Returns:
        ``(x_train, y_train, x_val, y_val)``; integer ``y`` makes it a classification task.
    """
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split

    x, y = load_wine(return_X_y=True)
    x_train, x_val, y_train, y_val = train_test_split(
        x.astype(np.float32), y.astype(np.int64), test_size=0.25, random_state=0, stratify=y)
    mean, std = x_train.mean(0), x_train.std(0)
    return (x_train - mean) / std, y_train, (x_val - mean) / std, y_val
