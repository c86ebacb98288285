"""The ``hpo diagnose --history FILE`` format: a JSON object of per-epoch learning curves.

``{"train_loss": [...], "val_loss": [...], "train_accuracy": [...], "val_accuracy": [...], "lr": [...]}``;
NaN, Infinity and null are allowed (they are evidence of divergence or a missed epoch). The training
signals' series (``"signals/grad_norm": [...]``, docs/run_schema.md) may sit beside them. A labelled curve
file of ``tests/data/diagnosis_curves`` (``{"history": {...}, "label": ..., ...}``) reads too.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from tracker.schema import CURVE_METRICS as CURVE_KEYS
from trainers.signal_names import is_signal

__all__ = ["HistoryFileError", "load_history_file"]

_LOSS_KEYS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")


class HistoryFileError(ValueError):
    """A history file that cannot be read as per-epoch learning curves; the message names file and fault."""


def load_history_file(path: str | os.PathLike[str]) -> dict[str, list[float | None]]:
    """Read ``{"train_loss": [...], "val_loss": [...], ...}`` (NaN, Infinity and null allowed).

    Raises:
        HistoryFileError: the file is missing, is not JSON, is not an object, has unknown keys, a series that
            is not a list of numbers/null, no loss series, or loss series of unequal length.
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
    if isinstance(data.get("history"), dict) and set(data) - set(CURVE_KEYS):
        data = data["history"]  # a labelled curve file (tests/data/diagnosis_curves) wraps its history
    unknown = sorted(k for k in set(data) - set(CURVE_KEYS) if not is_signal(k))
    if unknown:
        raise HistoryFileError(f"{p}: unknown key(s) {', '.join(map(repr, unknown))}; allowed keys are "
                               f"{', '.join(CURVE_KEYS)} and signals/* series.")
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
