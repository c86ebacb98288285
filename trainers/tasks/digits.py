"""scikit-learn's 8x8 handwritten digits: 1,797 images shipped with the package, 10 classes."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from trainers.catalog import DEFAULT_TEST_FRACTION
from trainers.data import TaskData, from_arrays, split_settings


@lru_cache(maxsize=4)
def _split(val_fraction: float, test_fraction: float | None, split_seed: int) -> TaskData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]  # (N, 1, 8, 8), pixels in [0, 1]
    return from_arrays("digits", x, digits.target.astype(np.int64), val_fraction, standardise=False,
                       split_seed=split_seed, test_fraction=test_fraction)


def load(options: dict[str, Any]) -> TaskData:
    """A stratified test share (``test_fraction``, default 20%), then a stratified validation share of the
    rest (``val_fraction``, default 20%); both fixed by ``split_seed`` (the sweep's seed)."""
    return _split(*split_settings(options, test_default=DEFAULT_TEST_FRACTION))
