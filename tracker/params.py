"""Hyperparameter values as the store holds them: MLflow keeps params as text, readers want values back.

Light on purpose (no pandas): ``hpo best`` formats its table with :func:`present`, and a trials
frame marks a conditional parameter that was inactive in a trial with NaN.
"""

from __future__ import annotations

import json
import math
from typing import Any

__all__ = ["parse_param", "present"]


def parse_param(value: str | None) -> Any:
    """MLflow stores params as strings; give back the bool, int, float or None they were logged from."""
    if value is None:
        return None
    text = value.strip()
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    if lowered in ("none", "null"):
        return None
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return value
    return number if math.isfinite(number) or lowered in ("inf", "-inf", "nan") else value


def present(value: Any) -> bool:
    """A value is there: not ``None`` and not NaN (a trials frame's mark for an inactive parameter)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def param_text(value: Any) -> str:
    """A param value as the store keeps it: booleans lowercase, lists and mappings as JSON, the rest ``str``."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list | tuple | dict):
        return json.dumps(value)
    return str(value)
