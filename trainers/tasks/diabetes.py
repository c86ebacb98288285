"""scikit-learn's diabetes data: 442 patients, 10 features, disease progression after one year."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from trainers.catalog import DEFAULT_TEST_FRACTION
from trainers.data import TaskData, from_arrays, split_settings


@lru_cache(maxsize=4)
def _split(val_fraction: float, test_fraction: float | None, split_seed: int) -> TaskData:
    from sklearn.datasets import load_diabetes

    x, y = load_diabetes(return_X_y=True, scaled=False)
    return from_arrays("diabetes", x, y, val_fraction, standardise=True, kind="regression",
                       split_seed=split_seed, test_fraction=test_fraction)


def load(options: dict[str, Any]) -> TaskData:
    """Test (``test_fraction``, default 20%) and validation (``val_fraction`` of the rest) shares fixed by
    ``split_seed``; features and target standardised with the training part's statistics, so val_loss
    (MSE) and val_mae are in target standard deviations."""
    return _split(*split_settings(options, test_default=DEFAULT_TEST_FRACTION))
