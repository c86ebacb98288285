"""Your own data for the built-in loop: ``trainer.data: "winelab.data:load_data"``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np


def load_data(config: Mapping[str, Any]) -> tuple[np.ndarray, ...]:
    """scikit-learn's wine data: 20% test, then 75/25 train/validation, stratified, standardised with the
    training part's statistics. The split follows ``config["split_seed"]`` (the sweep's seed), so every
    trial of a sweep sees the same rows.

    Returns:
        ``(x_train, y_train, x_val, y_val, x_test, y_test)``; integer ``y`` makes it a classification task.
        The test arrays are read once, for the winner, after the search (return four arrays for none).
    """
    from sklearn.datasets import load_wine
    from sklearn.model_selection import train_test_split

    seed = int(config.get("split_seed", 0))
    x, y = load_wine(return_X_y=True)
    x, x_test, y, y_test = train_test_split(x.astype(np.float32), y.astype(np.int64), test_size=0.2,
                                            random_state=seed, stratify=y)
    x_train, x_val, y_train, y_val = train_test_split(x, y, test_size=0.25, random_state=seed, stratify=y)
    mean, std = x_train.mean(0), x_train.std(0)
    return (x_train - mean) / std, y_train, (x_val - mean) / std, y_val, (x_test - mean) / std, y_test
