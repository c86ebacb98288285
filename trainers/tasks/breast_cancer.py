"""scikit-learn's Wisconsin breast cancer data: 569 rows, 30 features, malignant vs benign."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from trainers import catalog
from trainers.data import TaskData, from_arrays


@lru_cache(maxsize=4)
def _split(val_fraction: float) -> TaskData:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    return from_arrays("breast_cancer", x, y, val_fraction, standardise=True, kind="classification")


def load(options: dict[str, Any]) -> TaskData:
    """Stratified hold-out of ``val_fraction``; features standardised with the training part's statistics."""
    return _split(float(options.get("val_fraction", catalog.CATALOG["val_fraction"].default)))
