"""scikit-learn's 8x8 handwritten digits: 1,797 images shipped with the package, 10 classes."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

import numpy as np

from trainers import catalog
from trainers.data import TaskData, from_arrays


@lru_cache(maxsize=4)
def _split(val_fraction: float) -> TaskData:
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.images / 16.0).astype(np.float32)[:, None, :, :]  # (N, 1, 8, 8), pixels in [0, 1]
    return from_arrays("digits", x, digits.target.astype(np.int64), val_fraction, standardise=False)


def load(options: dict[str, Any]) -> TaskData:
    """Train/validation split of the digits (``val_fraction``, default 20%, stratified, fixed seed)."""
    return _split(float(options.get("val_fraction", catalog.CATALOG["val_fraction"].default)))
