"""The rules that turn one trial's evidence into a verdict, findings and a one-sentence summary.

Thresholds are round numbers chosen on the sklearn-digits curves only (see docs/diagnosis.md); the other
datasets in tests/data/diagnosis_curves are held out to check that they transfer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hpo.diagnosis._features import Curves, Features

# -- divergence -------------------------------------------------------------------------------------
EXPLODED_X_CHANCE = 3.0  # a classifier's first-epoch loss above 3x chance-level loss has blown up
UNKNOWN_CLASSES_CHANCE = math.log(1000)  # chance-level loss when accuracy is logged but n_classes unknown
FIRST_EPOCH_BLOWUP = 30.0  # regression: first-epoch loss 30x the next epochs' (healthy curves: < 5x)
EXPLOSIVE_JUMP = 10.0  # training loss jumped 10x above its best, back above half its first value
GAVE_BACK = 0.25  # training loss climbed back >= 25% of the way to its start ...
GAVE_BACK_X = 1.5  # ... and ends >= 1.5x its best: it blew up late
# -- overfitting ------------------------------------------------------------------------------------
RISE_MIN = 0.04  # smoothed val loss ended >= 4% above its minimum ...
RISE_NOISE_X = 4.0  # ... and >= 4x the epoch-to-epoch noise ...
SINCE_MIN_FRAC = 0.3  # ... with the minimum >= 30% of the run before the end (early-stop patience is less)
RISE_STRONG = 0.25  # or a rise this large, whatever the timing
GAP_FOR_OVERFIT = 0.1  # train loss must sit well below val loss
# -- underfitting -----------------------------------------------------------------------------------
PROGRESS_LOW = 0.35  # train loss still above 65% of its start (or of chance level)
PROGRESS_MID = 0.75  # ... or above 25% of it with ...
GAP_NONE = 0.05  # ... train and val loss within 5% of each other
STILL_IMPROVING = 0.15  # >= 15% of the total drop came in the last quarter of the epochs


@dataclass
class Judgement:
    verdict: str
    confidence: float
    findings: list[str]
    summary: str


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _conf(margin: float, lo: float = 0.55, hi: float = 0.95) -> float:
    """Map how far past its threshold a rule fired (0: just, 1: far) into a confidence."""
    return round(lo + (hi - lo) * max(0.0, min(1.0, margin)), 2)


def judge(c: Curves, f: Features, is_classifier: bool) -> Judgement:
    """Apply the rules in order: diverged, overfitting, underfitting, else good_fit."""
    findings = _findings(c, f)
    j = _diverged(c, f, is_classifier)
    if j is None:
        j = _overfitting(f) or _underfitting(c, f) or _good_fit(c, f)
    for x in findings:
        if x not in j.findings:
            j.findings.append(x)
    if f.n < 6:
        j.confidence = round(min(j.confidence, 0.6), 2)
        j.findings.append("short_history")
    if c.val is None and j.verdict != "diverged":
        j.confidence = round(min(j.confidence, 0.6), 2)
    return j


def _diverged(c: Curves, f: Features, is_classifier: bool) -> Judgement | None:
    if c.nonfinite:
        key, epoch = min(c.nonfinite.items(), key=lambda kv: kv[1])
        return Judgement("diverged", 0.95, ["non_finite_loss", "lr_too_high"],
                         f"Diverged: {key} became NaN/inf at epoch {epoch}.")
    if f.first_loss is not None and is_classifier:
        chance = f.chance_loss or UNKNOWN_CLASSES_CHANCE
        ratio = f.first_loss / chance
        if ratio > EXPLODED_X_CHANCE:
            return Judgement("diverged", _conf(math.log10(ratio / EXPLODED_X_CHANCE) / 2, 0.7),
                             ["exploded_early", "lr_too_high"],
                             f"Diverged: the first epoch's training loss ({f.first_loss:.3g}) is "
                             f"{ratio:.0f}x chance level; the loss blew up.")
    elif f.first_loss is not None and f.first_epoch_blowup >= FIRST_EPOCH_BLOWUP:
        return Judgement("diverged", _conf(math.log10(f.first_epoch_blowup / FIRST_EPOCH_BLOWUP) / 2, 0.7),
                         ["exploded_early", "lr_too_high"],
                         f"Diverged: the first epoch's training loss was {f.first_epoch_blowup:.0f}x that of "
                         "the next epochs; the loss blew up.")
    if c.train is None and c.val is not None:  # only a validation loss: its blow-up is the evidence
        v = c.val[np.isfinite(c.val)]
        if len(v) >= 2 and v[-1] >= EXPLOSIVE_JUMP * max(float(v.min()), 1e-12) and v[-1] > v[0]:
            jump = float(v[-1] / max(float(v.min()), 1e-12))
            return Judgement("diverged", _conf(math.log10(jump / EXPLOSIVE_JUMP) / 2, 0.7),
                             ["loss_spike", "lr_too_high"],
                             f"Diverged: validation loss rose to {jump:.3g}x its best; there is no training "
                             "loss to compare.")
    if f.explosive_jump >= EXPLOSIVE_JUMP:
        return Judgement("diverged", _conf(math.log10(f.explosive_jump / EXPLOSIVE_JUMP) / 2, 0.7),
                         ["loss_spike", "lr_too_high"],
                         f"Diverged: training loss jumped to {f.explosive_jump:.3g}x its best so far, back above "
                         "half its starting value.")
    tmin, tend = f.evidence.get("train_loss_min"), f.evidence.get("train_loss_end")
    if tmin and tend and f.train_gaveback >= GAVE_BACK and tend >= GAVE_BACK_X * tmin:
        return Judgement("diverged", _conf((f.train_gaveback - GAVE_BACK) / 0.5, 0.7),
                         ["training_loss_rose", "lr_too_high"],
                         f"Diverged: training loss rose from its best {tmin:.3g} to {tend:.3g} and gave back "
                         f"{_pct(min(f.train_gaveback, 1.0))} of its progress.")
    return None


def _overfitting(f: Features) -> Judgement | None:
    if f.val_rise is None or f.gap_ratio is None or f.since_min_frac is None:
        return None
    since = f.evidence.get("epochs_since_val_min", 0)
    need = max(RISE_MIN, RISE_NOISE_X * f.val_noise)
    timed = f.since_min_frac >= SINCE_MIN_FRAC or f.val_rise >= RISE_STRONG
    if f.val_rise >= need and since >= 2 and timed and f.gap_ratio >= GAP_FOR_OVERFIT:
        conf = _conf(0.5 * min(1.0, (f.val_rise - need) / 0.25) + 0.5 * min(1.0, f.since_min_frac / 0.6))
        return Judgement("overfitting", conf, ["val_loss_rising"],
                         f"Overfitting: validation loss bottomed out at epoch {f.val_min_epoch} and rose "
                         f"{_pct(f.val_rise)} since, while training loss kept falling.")
    return None


def _underfitting(c: Curves, f: Features) -> Judgement | None:
    if f.progress is None:
        return None
    level = "chance level" if f.chance_loss else "its start"
    if f.progress < PROGRESS_LOW:
        return Judgement("underfitting", _conf((PROGRESS_LOW - f.progress) / PROGRESS_LOW),
                         ["high_training_loss"],
                         f"Underfitting: training loss ended at {_pct(1 - f.progress)} of {level}; "
                         "the model barely fit its own training data.")
    val_improving = f.val_still_improving if c.val is not None else f.still_improving
    if (f.still_improving or 0) >= STILL_IMPROVING and (val_improving or 0) >= STILL_IMPROVING:
        return Judgement("underfitting", _conf((f.still_improving or 0) / 0.3), ["still_improving"],
                         f"Underfitting: losses were still falling when training stopped "
                         f"({_pct(f.still_improving or 0)} of the drop came in the last epochs).")
    if f.gap_ratio is not None and f.gap_ratio < GAP_NONE and f.progress < PROGRESS_MID:
        return Judgement("underfitting", _conf(0.5 * (PROGRESS_MID - f.progress) / 0.4 + 0.3),
                         ["no_generalization_gap"],
                         f"Underfitting: training loss ended at {_pct(1 - f.progress)} of {level} and is no "
                         "lower than validation loss; the model is held back, not overfitting.")
    return None


def _good_fit(c: Curves, f: Features) -> Judgement:
    margins = [min(1.0, ((f.progress or 0) - PROGRESS_LOW) / 0.5)]
    if f.val_rise is not None:
        margins.append(1.0 - min(1.0, f.val_rise / RISE_STRONG))
    conf = _conf(min(margins), 0.5, 0.9)
    if c.val is None:
        return Judgement("good_fit", conf, [],
                         "Good fit on training data; no validation series, so overfitting cannot be checked.")
    return Judgement("good_fit", conf, [],
                     f"Good fit: validation loss reached its minimum at epoch {f.val_min_epoch} of {f.n} "
                     f"and training loss fell to {_pct(1 - (f.progress or 0))} of its start.")


def _findings(c: Curves, f: Features) -> list[str]:
    out: list[str] = []
    if c.val is None:
        out.append("no_validation")
    if f.oscillation >= 0.1 or f.max_jump >= 2.0:
        out += ["unstable", "lr_too_high"]
    if (f.still_improving or 0) >= 0.1 and (c.val is None or (f.val_still_improving or 0) >= 0.05):
        out.append("still_improving")
    elif f.still_improving is not None and abs(f.still_improving) < 0.02 and (f.val_rise or 0) < RISE_MIN:
        out.append("plateau")
    if f.gap_ratio is not None and f.gap_ratio >= 0.5:
        out.append("large_generalization_gap")
    return out
