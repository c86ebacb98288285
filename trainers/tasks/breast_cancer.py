"""scikit-learn's Wisconsin breast cancer data: 569 rows, 30 features, malignant vs benign."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from trainers.catalog import DEFAULT_TEST_FRACTION
from trainers.data import TaskData, from_arrays, split_settings


@lru_cache(maxsize=4)
def _split(val_fraction: float, test_fraction: float | None, split_seed: int) -> TaskData:
    from sklearn.datasets import load_breast_cancer

    x, y = load_breast_cancer(return_X_y=True)
    return from_arrays("breast_cancer", x, y, val_fraction, standardise=True, kind="classification",
                       split_seed=split_seed, test_fraction=test_fraction)


def load(options: dict[str, Any]) -> TaskData:
    """Stratified test (``test_fraction``, default 20%) and validation (``val_fraction`` of the rest) shares,
    fixed by ``split_seed``; features standardised with the training part's statistics."""
    return _split(*split_settings(options, test_default=DEFAULT_TEST_FRACTION))
