"""Your own architecture for the built-in loop: ``trainer.model: "winelab.models:build_model"``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn


def build_model(config: Mapping[str, Any], input_shape: tuple[int, ...], n_outputs: int) -> nn.Module:
    """A one-hidden-layer tanh MLP whose width comes from the trial config.

    Args:
        config: the trial config (catalog settings such as ``hidden`` and ``dropout`` and any of your own).
        input_shape: one example's shape, e.g. ``(13,)`` for the wine table.
        n_outputs: classes (classification) or targets (regression).
    """
    width = int(config.get("hidden", 32))
    return nn.Sequential(
        nn.Flatten(),
        nn.Linear(input_shape[0], width), nn.Tanh(), nn.Dropout(float(config.get("dropout", 0.0))),
        nn.Linear(width, n_outputs),
    )
