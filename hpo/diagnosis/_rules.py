"""The rules that turn one trial's evidence into a verdict, findings and a one-sentence summary.

Thresholds are round numbers chosen on the sklearn-digits curves (and, for the accuracy, validation-size and
borderline settings, on seed 0 of the field curves; see docs/diagnosis.md); the other curves in
tests/data/diagnosis_curves are held out to check that they transfer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields, replace

import numpy as np

from hpo.diagnosis._features import Curves, Features


@dataclass(frozen=True)
class Thresholds:
    """Where each rule fires. ``judge`` also re-runs the rules with each threshold moved by ``BORDER``
    either way: a verdict that changes under such a move is borderline, and says so."""

    # -- divergence
    exploded_x_chance: float = 3.0  # a classifier's first-epoch loss above 3x chance-level loss has blown up
    first_epoch_blowup: float = 30.0  # regression: first-epoch loss 30x the next epochs' (healthy: < 5x)
    explosive_jump: float = 10.0  # training loss jumped 10x above its best, back above half its first value
    gave_back: float = 0.25  # training loss climbed back >= 25% of the way to its start ...
    gave_back_x: float = 1.5  # ... and ends >= 1.5x its best: it blew up late
    # -- overfitting
    rise_min: float = 0.04  # smoothed val loss ended >= 4% above its minimum ...
    rise_noise_x: float = 4.0  # ... and >= 4x the epoch-to-epoch noise ...
    rise_size_x: float = 0.5  # ... and >= half the sampling error of a mean over the validation set (the same
    # examples are scored every epoch, so two epochs' means differ by less than either is off) ...
    since_min_frac: float = 0.3  # ... with the minimum >= 30% of the run before the end
    rise_strong: float = 0.25  # or a rise this large, whatever the timing
    gap_for_overfit: float = 0.1  # train loss must sit well below val loss
    # -- underfitting
    progress_low: float = 0.35  # train loss still above 65% of the way from its floor to its start (or chance)
    progress_mid: float = 0.75  # ... or above 25% of it with ...
    gap_none: float = 0.05  # ... train and val loss within 5% of each other
    still_improving: float = 0.15  # >= 15% of the total drop came in the last quarter of the epochs
    high_accuracy: float = 0.97  # train and validation accuracy both this high: the model fits, whatever its loss
    # -- the loss floor estimated from training accuracy (label noise; ``accuracy_floor``)
    floor_match: float = 0.1  # training loss within 10% of the loss its training accuracy implies ...
    floor_learned: float = 0.5  # ... at an accuracy at least half way from chance to 1: the floor is that loss


BASE = Thresholds()
BORDER = 1.25  # a threshold moved by this factor (or its inverse) that changes the verdict: borderline
# Thresholds that act as one (the rise needed is the largest of three): moved together as well as alone.
JOINT = (("rise_min", "rise_noise_x", "rise_size_x"),)
UNKNOWN_CLASSES_CHANCE = math.log(1000)  # chance-level loss when accuracy is logged but n_classes unknown
BORDERLINE_CONFIDENCE = 0.6  # the most a borderline verdict claims
# A verdict read from validation loss is only as sure as the validation set is large: confidence is capped
# at 0.5 + 0.45 * sqrt(val_size / FULL_CONFIDENCE_VAL_SIZE) (40 examples: 0.59; 200: 0.70; 1,000+: 0.95).
FULL_CONFIDENCE_VAL_SIZE = 1000
# ... and only as sure as it is steady: capped at 0.95 - 2 x its epoch-to-epoch noise (noise 0.1: 0.75), >= 0.5.
NOISE_CONFIDENCE_X = 2.0


@dataclass
class Judgement:
    verdict: str
    confidence: float
    findings: list[str]
    summary: str
    decided_by: str = ""  # the signal that decided: see DECIDED_BY
    borderline_with: list[str] = field(default_factory=list)
    evidence: dict[str, object] = field(default_factory=dict)  # added to the features' evidence


# What ``decided_by`` says, in the evidence of every verdict.
DECIDED_BY = {
    "non_finite_loss": "a loss value became NaN/inf",
    "first_epoch_loss": "the first epoch's training loss against chance level (or the next epochs)",
    "validation_loss_blowup": "the validation loss alone ended far above its best",
    "training_loss_jump": "the training loss jumped far above its best",
    "training_loss_rose": "the training loss gave back its progress",
    "validation_loss_rise": "the validation loss rose from its minimum while training loss stayed below it",
    "training_loss_vs_floor": "how far the training loss fell towards its floor",
    "still_improving": "both losses were still falling at the end",
    "generalization_gap": "no gap between training and validation loss, with the loss well above its floor",
    "accuracy": "training and validation accuracy both high",
    "validation_loss": "validation loss levelled off without rising, and training loss fell far enough",
    "training_loss": "training loss fell far enough (no validation series)",
    "loss_floor_estimate": "the training loss sits at the floor its training accuracy implies (label noise)",
}


def _pct(x: float) -> str:
    return f"{100 * x:.0f}%"


def _conf(margin: float, lo: float = 0.55, hi: float = 0.95) -> float:
    """Map how far past its threshold a rule fired (0: just, 1: far) into a confidence."""
    return round(lo + (hi - lo) * max(0.0, min(1.0, margin)), 2)


def judge(c: Curves, f: Features, is_classifier: bool) -> Judgement:
    """Apply the rules in order (diverged, overfitting, underfitting, else good_fit), then ask whether moving
    any one threshold by ``BORDER`` would change the verdict: if so the verdict is borderline and says so."""
    j = _decide(c, f, is_classifier, BASE)
    for x in _findings(c, f):
        if x not in j.findings:
            j.findings.append(x)
    others = _alternatives(c, f, is_classifier, j.verdict)
    why = "the deciding measure sits near its threshold"
    if estimated_floor_applies(f) and j.verdict != "diverged":  # a diverged verdict reads no floor
        _note_estimated_floor(j, f)
        # the estimate cannot tell noisy labels from a model too small to do better: if it alone decided, say so
        without = _decide(c, f, is_classifier, replace(BASE, floor_learned=math.inf)).verdict
        if without != j.verdict:
            j.decided_by = "loss_floor_estimate"
            others = sorted(set(others) | {without})
            why = (f"it rests on a loss floor estimated from the training accuracy; if the labels are clean, "
                   f"the curves read as {without}")
    if others:
        j.borderline_with = others
        j.findings.append("borderline")
        j.confidence = round(min(j.confidence, BORDERLINE_CONFIDENCE), 2)
        j.summary = f"Borderline between {j.verdict} and {' / '.join(others)}: {why}. " + j.summary
    if j.verdict in ("overfitting", "good_fit") and j.decided_by != "accuracy":
        _cap_by_validation(j, f)
    if f.n < 6:
        j.confidence = round(min(j.confidence, 0.6), 2)
        j.findings.append("short_history")
    if c.val is None and j.verdict != "diverged":
        j.confidence = round(min(j.confidence, 0.6), 2)
    return j


def _cap_by_validation(j: Judgement, f: Features) -> None:
    """A verdict read from the validation loss is only as sure as that loss is steady and its set large."""
    if f.val_size:
        cap = 0.5 + 0.45 * min(1.0, math.sqrt(f.val_size / FULL_CONFIDENCE_VAL_SIZE))
        if j.confidence > cap:
            j.confidence = round(cap, 2)
            j.findings.append("small_validation_set")
    cap = max(0.5, 0.95 - NOISE_CONFIDENCE_X * f.val_noise)
    if j.confidence > cap:
        j.confidence = round(cap, 2)
        j.findings.append("noisy_validation")


def _decide(c: Curves, f: Features, is_classifier: bool, t: Thresholds) -> Judgement:
    j = _diverged(c, f, is_classifier, t)
    if j is None:
        j = _overfitting(f, t) or _underfitting(c, f, t) or _good_fit(c, f, t)
    return j


def _alternatives(c: Curves, f: Features, is_classifier: bool, verdict: str) -> list[str]:
    """Verdicts the rules would give with any one threshold moved by BORDER either way."""
    out: set[str] = set()
    for names in [(th.name,) for th in fields(Thresholds)] + list(JOINT):
        for factor in (BORDER, 1 / BORDER):
            moved = replace(BASE, **{name: getattr(BASE, name) * factor for name in names})
            other = _decide(c, f, is_classifier, moved).verdict
            if other != verdict:
                out.add(other)
    return sorted(out)


def _diverged(c: Curves, f: Features, is_classifier: bool, t: Thresholds) -> Judgement | None:
    if c.nonfinite:
        key, epoch = min(c.nonfinite.items(), key=lambda kv: kv[1])
        return Judgement("diverged", 0.95, ["non_finite_loss", "lr_too_high"],
                         f"Diverged: {key} became NaN/inf at epoch {epoch}.", "non_finite_loss")
    if f.first_loss is not None and is_classifier:
        chance = f.chance_loss or UNKNOWN_CLASSES_CHANCE
        ratio = f.first_loss / chance
        if ratio > t.exploded_x_chance:
            return Judgement("diverged", _conf(math.log10(ratio / t.exploded_x_chance) / 2, 0.7),
                             ["exploded_early", "lr_too_high"],
                             f"Diverged: the first epoch's training loss ({f.first_loss:.3g}) is "
                             f"{ratio:.0f}x chance level; the loss blew up.", "first_epoch_loss")
    elif f.first_loss is not None and f.first_epoch_blowup >= t.first_epoch_blowup:
        return Judgement("diverged", _conf(math.log10(f.first_epoch_blowup / t.first_epoch_blowup) / 2, 0.7),
                         ["exploded_early", "lr_too_high"],
                         f"Diverged: the first epoch's training loss was {f.first_epoch_blowup:.0f}x that of "
                         "the next epochs; the loss blew up.", "first_epoch_loss")
    if c.train is None and c.val is not None:  # only a validation loss: its blow-up is the evidence
        v = c.val[np.isfinite(c.val)]
        if len(v) >= 2 and v[-1] >= t.explosive_jump * max(float(v.min()), 1e-12) and v[-1] > v[0]:
            jump = float(v[-1] / max(float(v.min()), 1e-12))
            return Judgement("diverged", _conf(math.log10(jump / t.explosive_jump) / 2, 0.7),
                             ["loss_spike", "lr_too_high"],
                             f"Diverged: validation loss rose to {jump:.3g}x its best; there is no training "
                             "loss to compare.", "validation_loss_blowup")
    if f.explosive_jump >= t.explosive_jump:
        return Judgement("diverged", _conf(math.log10(f.explosive_jump / t.explosive_jump) / 2, 0.7),
                         ["loss_spike", "lr_too_high"],
                         f"Diverged: training loss jumped to {f.explosive_jump:.3g}x its best so far, back above "
                         "half its starting value.", "training_loss_jump")
    tmin, tend = f.evidence.get("train_loss_min"), f.evidence.get("train_loss_end")
    if tmin and tend and f.train_gaveback >= t.gave_back and tend >= t.gave_back_x * tmin:
        return Judgement("diverged", _conf((f.train_gaveback - t.gave_back) / 0.5, 0.7),
                         ["training_loss_rose", "lr_too_high"],
                         f"Diverged: training loss rose from its best {tmin:.3g} to {tend:.3g} and gave back "
                         f"{_pct(min(f.train_gaveback, 1.0))} of its progress.", "training_loss_rose")
    return None


def rise_needed(f: Features, t: Thresholds = BASE) -> float:
    """How far validation loss must rise above its minimum to count: a floor, the curve's own epoch-to-epoch
    noise, and a share of the sampling error of a value over ``val_size`` examples (``sampling_error``)."""
    return max(t.rise_min, t.rise_noise_x * f.val_noise, t.rise_size_x * f.val_sampling_error)


def _overfitting(f: Features, t: Thresholds) -> Judgement | None:
    if f.val_rise is None or f.gap_ratio is None or f.since_min_frac is None:
        return None
    since = f.evidence.get("epochs_since_val_min", 0)
    need = rise_needed(f, t)
    timed = f.since_min_frac >= t.since_min_frac or f.val_rise >= t.rise_strong
    if f.val_rise >= need and since >= 2 and timed and f.gap_ratio >= t.gap_for_overfit:
        conf = _conf(0.5 * min(1.0, (f.val_rise - need) / 0.25) + 0.5 * min(1.0, f.since_min_frac / 0.6))
        return Judgement("overfitting", conf, ["val_loss_rising"],
                         f"Overfitting: validation loss bottomed out at epoch {f.val_min_epoch} and rose "
                         f"{_pct(f.val_rise)} since, while training loss kept falling.", "validation_loss_rise")
    return None


def accuracy_fits(f: Features, t: Thresholds = BASE) -> bool:
    """Validation accuracy (and training accuracy, when logged) at or above ``high_accuracy``."""
    accs = [a for a in (f.train_acc_end, f.val_acc_end) if a is not None]
    return f.val_acc_end is not None and min(accs) >= t.high_accuracy


def estimated_floor_applies(f: Features, t: Thresholds = BASE) -> bool:
    """The training loss sits within ``floor_match`` of the loss its training accuracy implies
    (``accuracy_floor``), above any known floor, at an accuracy ``floor_learned`` of the way from chance to 1
    and below ``high_accuracy``.

    Such a loss is what a model equally unsure of every example has, the mark of labels that are uncertain
    alike everywhere (label noise): the estimate becomes the floor. Near chance every loss matches it, so the
    accuracy must be well above chance; a model sure of its easy examples sits well below it, and one still
    learning well above it. At ``high_accuracy`` and above the floor is negligible and accuracy judges the fit.
    """
    return (f.acc_floor_ratio is not None and f.acc_above_chance is not None and f.acc_floor is not None
            and f.train_acc_end is not None and f.train_acc_end < t.high_accuracy
            and abs(f.acc_floor_ratio - 1.0) <= t.floor_match and f.acc_above_chance >= t.floor_learned
            and f.acc_floor > f.loss_floor)


def _progress_to_floor(f: Features, t: Thresholds) -> float | None:
    """How far the training loss came towards its floor: the estimated one where it applies."""
    return f.progress_to_acc_floor if estimated_floor_applies(f, t) else f.progress


def _note_estimated_floor(j: Judgement, f: Features) -> None:
    j.findings.append("label_noise_floor")
    j.evidence.update(train_loss_floor=f.evidence.get("accuracy_implied_loss"),
                      train_loss_floor_source=_floor_source(f))


def _floor_source(f: Features) -> str:
    return (f"estimated: the loss of a model equally unsure of every example at training accuracy "
            f"{_pct(f.train_acc_end or 0)}, as with label noise")


def _underfitting(c: Curves, f: Features, t: Thresholds) -> Judgement | None:
    progress = _progress_to_floor(f, t)
    if progress is None or accuracy_fits(f, t):
        return None
    came = f"training loss came only {_pct(max(progress, 0.0))} of the way down from {_way(f, t)}"
    if progress < t.progress_low:
        return Judgement("underfitting", _conf((t.progress_low - progress) / t.progress_low),
                         ["high_training_loss"],
                         f"Underfitting: {came}; the model barely fit its own training data.", "training_loss_vs_floor")
    val_improving = f.val_still_improving if c.val is not None else f.still_improving
    if (f.still_improving or 0) >= t.still_improving and (val_improving or 0) >= t.still_improving:
        return Judgement("underfitting", _conf((f.still_improving or 0) / 0.3), ["still_improving"],
                         f"Underfitting: losses were still falling when training stopped "
                         f"({_pct(f.still_improving or 0)} of the drop came in the last epochs).", "still_improving")
    if f.gap_ratio is not None and f.gap_ratio < t.gap_none and progress < t.progress_mid:
        return Judgement("underfitting", _conf(0.5 * (t.progress_mid - progress) / 0.4 + 0.3),
                         ["no_generalization_gap"],
                         f"Underfitting: {came} and is no lower than validation loss; the model is held back, "
                         "not overfitting.", "generalization_gap")
    return None


def _good_fit(c: Curves, f: Features, t: Thresholds) -> Judgement:
    if accuracy_fits(f, t):
        accs = ", ".join(f"{name} {_pct(a)}" for name, a in (("training", f.train_acc_end),
                                                               ("validation", f.val_acc_end)) if a is not None)
        floor = "" if not f.loss_floor else f" (the loss floor is {f.loss_floor:.3g}: {f.floor_source})"
        return Judgement("good_fit", _conf(min(1.0, 0.5 + (f.val_acc_end or 0) - t.high_accuracy), 0.6, 0.9), [],
                         f"Good fit: accuracy is high ({accs}) and validation loss did not rise; the loss level "
                         f"itself does not decide{floor}.", "accuracy")
    progress = _progress_to_floor(f, t) or 0.0
    margins = [min(1.0, (progress - t.progress_low) / 0.5)]
    if f.val_rise is not None:
        margins.append(1.0 - min(1.0, f.val_rise / t.rise_strong))
    conf = _conf(min(margins), 0.5, 0.9)
    if c.val is None:
        return Judgement("good_fit", conf, [],
                         "Good fit on training data; no validation series, so overfitting cannot be checked.",
                         "training_loss")
    return Judgement("good_fit", conf, [],
                     f"Good fit: validation loss reached its minimum at epoch {f.val_min_epoch} of {f.n} "
                     f"and training loss came {_pct(progress)} of the way down from {_way(f, t)}.",
                     "validation_loss")


def _way(f: Features, t: Thresholds) -> str:
    """'chance level to its floor 0.5 (label smoothing 0.1 over 10 classes)', 'its start to zero', ..."""
    start = "chance level" if f.chance_loss else "its start"
    if estimated_floor_applies(f, t):
        return f"{start} to its floor {f.acc_floor or 0:.3g} ({_floor_source(f)})"
    floor = f"its floor {f.loss_floor:.3g} ({f.floor_source})" if f.loss_floor else "zero"
    return f"{start} to {floor}"


def _findings(c: Curves, f: Features) -> list[str]:
    out: list[str] = []
    if c.val is None:
        out.append("no_validation")
    if f.oscillation >= 0.1 or f.max_jump >= 2.0:
        out += ["unstable", "lr_too_high"]
    if (f.still_improving or 0) >= 0.1 and (c.val is None or (f.val_still_improving or 0) >= 0.05):
        out.append("still_improving")
    elif f.still_improving is not None and abs(f.still_improving) < 0.02 and (f.val_rise or 0) < BASE.rise_min:
        out.append("plateau")
    if f.gap_ratio is not None and f.gap_ratio >= 0.5:
        out.append("large_generalization_gap")
    return out
