"""scikit-learn's diabetes data: 442 patients, 10 features, disease progression after one year."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from trainers import catalog
from trainers.data import TaskData, from_arrays


@lru_cache(maxsize=4)
def _split(val_fraction: float) -> TaskData:
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True, scaled=False)
    return from_arrays("diabetes", x, y, val_fraction, standardise=True, kind="regression")


def load(options: dict[str, Any]) -> TaskData:
    """Hold-out of ``val_fraction``; features and target standardised with the training part's
    statistics, so val_loss (MSE) and val_mae are in target standard deviations."""
    return _split(float(options.get("val_fraction", catalog.CATALOG["val_fraction"].default)))
