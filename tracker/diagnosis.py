"""Diagnose overfitting, underfitting and divergence from a trial's learning curves; summarize a sweep.

Pure Python + numpy. ``diagnose(history)`` returns a verdict (one of ``VERDICTS``, or ``insufficient_data``
below 3 usable epochs), a confidence, the evidence behind it, secondary findings and advice tied to the
trial's own hyperparameters. ``summarize_sweep`` finds the settings that drive the verdicts across trials.
The rules and their measured accuracy are described in docs/diagnosis.md.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tracker._diagnosis_advice import advise
from tracker._diagnosis_features import MIN_EPOCHS, clean, measure
from tracker._diagnosis_rules import judge
from tracker._diagnosis_sweep import SweepSummary, summarize

__all__ = [
    "VERDICTS",
    "INSUFFICIENT_DATA",
    "HISTORY_KEYS",
    "Diagnosis",
    "HistoryFileError",
    "SweepSummary",
    "diagnose",
    "load_history_file",
    "summarize_sweep",
]

VERDICTS = ("overfitting", "underfitting", "good_fit", "diverged")
INSUFFICIENT_DATA = "insufficient_data"
HISTORY_KEYS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr")
_LOSS_KEYS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy")


@dataclass(frozen=True)
class Diagnosis:
    verdict: str
    confidence: float  # 0..1
    evidence: dict[str, Any]  # JSON-serialisable; None stands for NaN/unknown
    recommendations: list[str]
    findings: list[str] = field(default_factory=list)
    summary: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"verdict": self.verdict, "confidence": self.confidence, "evidence": dict(self.evidence),
                "recommendations": list(self.recommendations), "findings": list(self.findings),
                "summary": self.summary}


class HistoryFileError(ValueError):
    """A history file that cannot be read as per-epoch learning curves; the message names file and fault."""


def diagnose(history: Mapping[str, Sequence[float | None]], *, params: Mapping[str, Any] | None = None,
             n_classes: int | None = None, stopped_early: bool = False) -> Diagnosis:
    """Judge one trial's learning curves.

    Args:
        history: per-epoch series (index i = epoch i+1): train_loss, val_loss, and optionally train_accuracy,
            val_accuracy (fractions or percent; higher is better), lr. None/NaN/inf are kept as evidence of
            divergence. With no loss series, 1 - accuracy stands in for the loss.
        params: the trial's flat hyperparameters; the advice names them ("dropout is 0 here").
        n_classes: number of classes, for chance-level loss ln(n_classes) and accuracy 1/n_classes.
        stopped_early: the sweep's scheduler (ASHA, median rule) ended the trial before its last epoch:
            the verdict judges the curves so far, and the advice does not say "train longer".

    Returns:
        A Diagnosis; verdict is one of VERDICTS or "insufficient_data".
    """
    c = clean(history)
    finite_train = 0 if c.train is None else int(np.isfinite(c.train).sum())
    finite_val = 0 if c.val is None else int(np.isfinite(c.val).sum())
    if c.train is None and c.val is None:
        return _insufficient(0, "no loss or accuracy series: not enough epochs to judge.", c.notes)
    if not c.nonfinite and max(finite_train, finite_val) < MIN_EPOCHS:
        n = max(finite_train, finite_val)
        return _insufficient(n, f"only {n} epoch(s): not enough epochs to judge (need {MIN_EPOCHS}).", c.notes)
    f = measure(c, n_classes)
    if c.train is None:
        c.notes.append("no train_loss series: judged from validation only")
    is_classifier = bool(n_classes and n_classes > 1) or (
        (c.train_acc is not None or c.val_acc is not None) and not c.loss_from_accuracy)
    j = judge(c, f, is_classifier)
    evidence = dict(f.evidence)
    evidence["validation"] = "missing" if c.val is None else "present"
    if c.nonfinite:
        evidence["first_non_finite_epoch"] = dict(c.nonfinite)
    if c.notes:
        evidence["notes"] = list(c.notes)
    summary = j.summary
    findings = list(j.findings)
    if stopped_early:
        findings.append("stopped_early")
        evidence["stopped_early"] = True
        summary += " The sweep's scheduler stopped it early: this judges the curves so far."
    if c.val is None and "validation" not in summary:
        summary += " No validation series was given, so overfitting cannot be checked."
    return Diagnosis(j.verdict, float(j.confidence), _jsonable(evidence),
                     advise(j.verdict, findings, evidence, params), findings, summary)


def _insufficient(n: int, why: str, notes: list[str]) -> Diagnosis:
    ev: dict[str, Any] = {"epochs": n}
    if notes:
        ev["notes"] = list(notes)
    return Diagnosis(INSUFFICIENT_DATA, 0.0, ev, ["Run more epochs (at least 3) before judging the curves."],
                     ["short_history"], why[0].upper() + why[1:])


def _jsonable(x: Any) -> Any:
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        x = x.item()
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


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
    if isinstance(data.get("history"), dict) and set(data) - set(HISTORY_KEYS):
        data = data["history"]  # a labelled curve file (tests/data/diagnosis_curves) wraps its history
    unknown = sorted(set(data) - set(HISTORY_KEYS))
    if unknown:
        raise HistoryFileError(f"{p}: unknown key(s) {', '.join(map(repr, unknown))}; allowed keys are "
                               f"{', '.join(HISTORY_KEYS)}.")
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
                               f"(allowed keys: {', '.join(HISTORY_KEYS)}).")
    lengths = {k: len(out[k]) for k in ("train_loss", "val_loss") if out.get(k)}
    if len(set(lengths.values())) > 1:
        raise HistoryFileError(f"{p}: train_loss and val_loss must have one value per epoch each, got lengths "
                               f"{lengths['train_loss']} and {lengths['val_loss']}; pad missing epochs with null.")
    return out


def summarize_sweep(trials: Sequence[tuple[Mapping[str, Any], Diagnosis]]) -> SweepSummary:
    """Share of trials per verdict and the parameters that move the verdicts.

    Args:
        trials: (params, diagnosis) per trial, params flat.

    Returns:
        SweepSummary with counts and shares over VERDICTS (+ insufficient_data), drivers as sentences such as
        "All 3 trials with lr >= 0.3 diverged (vs 0% of the other 9).", and their numbers in details.
    """
    return summarize(trials, (*VERDICTS, INSUFFICIENT_DATA))
