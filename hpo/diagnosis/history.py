"""The ``hpo diagnose --history FILE`` format: a JSON object of per-epoch learning curves, with optional context.

``{"train_loss": [...], "val_loss": [...], "train_accuracy": [...], "val_accuracy": [...], "lr": [...],
"params": {"label_smoothing": 0.1, ...}, "n_classes": 10, "val_size": 1000}``; NaN, Infinity and null are
allowed in the series (they are evidence of divergence or a missed epoch); the three context keys are optional.
The training signals' series (``"signals/grad_norm": [...]``, docs/run_schema.md) may sit beside them.
A labelled curve file of ``tests/data/diagnosis_curves`` (``{"history": {...}, "params": ..., "label": ...}``)
reads too. The format is documented in docs/diagnosis.md ("The --history file").
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tracker.schema import CURVE_METRICS as CURVE_KEYS
from trainers.signal_names import is_signal

__all__ = ["CONTEXT_KEYS", "HistoryFile", "HistoryFileError", "load_history_file", "read_history_file"]

_LOSS_KEYS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")
CONTEXT_KEYS = ("params", "n_classes", "val_size")


class HistoryFileError(ValueError):
    """A history file that cannot be read as per-epoch learning curves; the message names file and fault."""


@dataclass(frozen=True)
class HistoryFile:
    """What a ``--history`` file holds: the series, and the context ``diagnose`` takes beside them."""

    history: dict[str, list[float | None]]
    params: dict[str, Any] = field(default_factory=dict)
    n_classes: int | None = None  # 0: regression
    val_size: int | None = None


def load_history_file(path: str | os.PathLike[str]) -> dict[str, list[float | None]]:
    """The series of a history file (see :func:`read_history_file`, which also returns its context)."""
    return read_history_file(path).history


def read_history_file(path: str | os.PathLike[str]) -> HistoryFile:
    """Read ``{"train_loss": [...], "val_loss": [...], ..., "params": {...}, "n_classes": K, "val_size": N}``.

    Raises:
        HistoryFileError: the file is missing, is not JSON, is not an object, has unknown keys, a series that
            is not a list of numbers/null, no loss series, loss series of unequal length, or context that is
            not of its type (``params`` an object of scalars with ``label_smoothing`` in [0, 1); ``n_classes``
            an integer >= 0; ``val_size`` an integer >= 1).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise HistoryFileError(f"{p}: cannot read history file ({e.strerror or e}).") from e
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise HistoryFileError(f"{p}: not valid JSON ({e.msg} at line {e.lineno}, column {e.colno}).") from e
    if not isinstance(data, dict):
        raise HistoryFileError(f"{p}: the history must be a JSON object mapping series names to lists, "
                               f"got {type(data).__name__}.")
    context = {k: data[k] for k in CONTEXT_KEYS if k in data}
    if isinstance(data.get("history"), dict) and set(data) - set(CURVE_KEYS) - set(CONTEXT_KEYS):
        data = data["history"]  # a labelled curve file (tests/data/diagnosis_curves) wraps its history
    series = {k: v for k, v in data.items() if k not in CONTEXT_KEYS}
    unknown = sorted(k for k in set(series) - set(CURVE_KEYS) if not is_signal(k))
    if unknown:
        raise HistoryFileError(f"{p}: unknown key(s) {', '.join(map(repr, unknown))}; allowed keys are "
                               f"{', '.join(CURVE_KEYS)}, signals/* series, and the context keys "
                               f"{', '.join(CONTEXT_KEYS)}.")
    history = _series(p, series)
    return HistoryFile(history, _params(p, context.get("params")),
                       _count(p, "n_classes", context.get("n_classes"), 0, "the number of classes; 0 for regression"),
                       _count(p, "val_size", context.get("val_size"), 1, "validation examples per val_loss value"))


def _series(p: Path, data: dict[str, Any]) -> dict[str, list[float | None]]:
    out: dict[str, list[float | None]] = {}
    for key, series in data.items():
        if not isinstance(series, list):
            raise HistoryFileError(f"{p}: {key!r} must be a list of per-epoch numbers, got "
                                   f"{type(series).__name__}.")
        vals: list[float | None] = []
        for i, v in enumerate(series):
            if v is None:
                vals.append(None)
            elif isinstance(v, int | float) and not isinstance(v, bool):
                vals.append(float(v))
            else:
                raise HistoryFileError(f"{p}: {key}[{i}] must be a number, NaN, Infinity or null, got {v!r}.")
        out[key] = vals
    if not any(out.get(k) for k in _LOSS_KEYS):
        raise HistoryFileError(f"{p}: no non-empty loss or accuracy series; give at least train_loss or val_loss "
                               f"(allowed keys: {', '.join(CURVE_KEYS)}).")
    lengths = {k: len(out[k]) for k in ("train_loss", "val_loss") if out.get(k)}
    if len(set(lengths.values())) > 1:
        raise HistoryFileError(f"{p}: train_loss and val_loss must have one value per epoch each, got lengths "
                               f"{lengths['train_loss']} and {lengths['val_loss']}; pad missing epochs with null.")
    return out


def _params(p: Path, params: Any) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict):
        raise HistoryFileError(f"{p}: params must be an object of the trial's hyperparameters "
                               f"(e.g. {{\"lr\": 0.001, \"label_smoothing\": 0.1}}), got {type(params).__name__}.")
    for key, value in params.items():
        if value is not None and not isinstance(value, str | int | float | bool):
            raise HistoryFileError(f"{p}: params.{key} must be a number, string, boolean or null, "
                                   f"got {type(value).__name__}.")
    eps = params.get("label_smoothing")
    if eps is not None and not (isinstance(eps, int | float) and not isinstance(eps, bool)
                                and math.isfinite(eps) and 0 <= eps < 1):
        raise HistoryFileError(f"{p}: params.label_smoothing must be a number in [0, 1), got {eps!r}.")
    return dict(params)


def _count(p: Path, key: str, value: Any, low: int, what: str) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise HistoryFileError(f"{p}: {key} must be an integer >= {low} ({what}), got {value!r}.")
    return value
