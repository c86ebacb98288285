"""One trial's verdict from its learning curves, and the sweep summary over many verdicts.

Pure Python + numpy. ``diagnose(history)`` returns a verdict (one of ``VERDICTS``, or ``insufficient_data``
below 3 usable epochs), a confidence, the evidence behind it, secondary findings and advice tied to the
trial's own hyperparameters. ``summarize_sweep`` finds the settings that drive the verdicts across trials.
The rules and their measured accuracy are described in docs/diagnosis.md.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hpo.diagnosis._advice import advise, number, param
from hpo.diagnosis._features import MIN_EPOCHS, clean, measure
from hpo.diagnosis._rules import judge
from hpo.diagnosis._sweep import SweepSummary, summarize

VERDICTS = ("overfitting", "underfitting", "good_fit", "diverged")
INSUFFICIENT_DATA = "insufficient_data"


@dataclass(frozen=True)
class Diagnosis:
    """One trial's verdict, how sure it is, the evidence, the advice; ``to_dict`` is the JSON shape."""

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


def diagnose(history: Mapping[str, Sequence[float | None]], *, params: Mapping[str, Any] | None = None,
             n_classes: int | None = None, stopped_early: bool = False, val_size: int | None = None) -> Diagnosis:
    """Judge one trial's learning curves.

    Args:
        history: per-epoch series (index i = epoch i+1): train_loss, val_loss, and optionally train_accuracy,
            val_accuracy (fractions or percent; higher is better), lr. None/NaN/inf are kept as evidence of
            divergence. With no loss series, 1 - accuracy stands in for the loss.
        params: the trial's flat hyperparameters; the advice names them ("dropout is 0 here").
        n_classes: number of classes, for chance-level loss ln(n_classes) and accuracy 1/n_classes.
        stopped_early: the sweep's scheduler (ASHA, median rule) ended the trial before its last epoch:
            the verdict judges the curves so far, and the advice does not say "train longer".
        val_size: validation examples behind each val_loss value; a small set makes a rise of the
            validation loss weaker evidence (and caps the confidence of verdicts read from it).

    The trial's ``label_smoothing`` (from ``params``) sets a floor under the training loss (see
    ``smoothing_floor``); a training loss at the level its training accuracy implies for labels noisy alike
    everywhere (``accuracy_floor``) takes that level as its floor, and says so (finding ``label_noise_floor``;
    borderline when that alone decides); training and validation accuracy at or above 97% mean the model
    fits, whatever its loss. ``evidence["decided_by"]`` names the signal that decided; a verdict that a small
    move of any threshold would change carries the finding ``borderline`` and ``evidence["borderline_with"]``.

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
    smoothing = number(param(params, "label_smoothing"))
    f = measure(c, n_classes, label_smoothing=smoothing, val_size=val_size)
    if c.train is None:
        c.notes.append("no train_loss series: judged from validation only")
    is_classifier = bool(n_classes and n_classes > 1) or (
        (c.train_acc is not None or c.val_acc is not None) and not c.loss_from_accuracy)
    j = judge(c, f, is_classifier)
    evidence = dict(f.evidence) | j.evidence
    evidence["validation"] = "missing" if c.val is None else "present"
    evidence["decided_by"] = j.decided_by
    if j.borderline_with:
        evidence["borderline_with"] = list(j.borderline_with)
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


def summarize_sweep(trials: Sequence[tuple[Mapping[str, Any], Diagnosis]]) -> SweepSummary:
    """Share of trials per verdict and the parameters that move the verdicts.

    Args:
        trials: (params, diagnosis) per trial, params flat.

    Returns:
        SweepSummary with counts and shares over VERDICTS (+ insufficient_data), drivers as sentences such as
        "All 3 trials with lr >= 0.3 diverged (vs 0% of the other 9).", and their numbers in details.
    """
    return summarize(trials, (*VERDICTS, INSUFFICIENT_DATA))
