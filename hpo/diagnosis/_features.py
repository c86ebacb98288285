"""Scale-free measurements of one trial's learning curves, the evidence that hpo.diagnosis judges.

Every measure is a ratio or a fraction of the curve's own range, so cross-entropy and MSE curves, and losses
of any magnitude, are judged alike. Curves are smoothed (running median, then running mean) before minima and
end levels are read, so one noisy epoch neither makes nor hides a verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

MIN_EPOCHS = 3
_EPS = 1e-12


@dataclass
class Curves:
    """Cleaned series: float arrays with NaN for every missing/NaN/inf value, or None when absent."""

    train: np.ndarray | None
    val: np.ndarray | None
    train_acc: np.ndarray | None
    val_acc: np.ndarray | None
    lr: np.ndarray | None
    loss_from_accuracy: bool = False  # no loss given: 1 - accuracy stands in for it
    val_from_accuracy: bool = False  # train_loss given but no val_loss: 1 - val_accuracy, on another scale
    notes: list[str] = field(default_factory=list)
    nonfinite: dict[str, int] = field(default_factory=dict)  # series -> 1-based epoch of its first bad value

    @property
    def n_epochs(self) -> int:
        return max((len(s) for s in (self.train, self.val) if s is not None), default=0)


def _to_array(values: Sequence[Any]) -> np.ndarray:
    out = np.full(len(values), np.nan)
    for i, v in enumerate(values):
        if v is None or isinstance(v, bool):
            continue
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        out[i] = f if math.isfinite(f) else np.nan
    return out


def _accuracy(values: Sequence[Any] | None) -> np.ndarray | None:
    if values is None or len(values) == 0:
        return None
    a = _to_array(values)
    if np.all(np.isnan(a)):
        return None
    if np.nanmax(a) > 1.0 + 1e-9:  # percentages
        a = a / 100.0
    return a


def clean(history: Mapping[str, Sequence[Any] | None]) -> Curves:
    """Turn a raw history into arrays; note which series are absent and where values stop being finite."""
    raw = {k: (list(v) if v is not None else None) for k, v in history.items()}
    c = Curves(None, None, _accuracy(raw.get("train_accuracy")), _accuracy(raw.get("val_accuracy")), None)
    lr = raw.get("lr")
    if lr:
        c.lr = _to_array(lr)
    for key, attr in (("train_loss", "train"), ("val_loss", "val")):
        vals = raw.get(key)
        if not vals:
            continue
        arr = _to_array(vals)
        bad = [i for i, v in enumerate(vals) if _is_bad(v)]
        if bad and len(bad) == len(vals) and key == "val_loss" and _all_finite(raw.get("train_loss")):
            c.notes.append("val_loss holds no values: treated as absent")
            continue  # an empty validation column next to a healthy training curve is a logging gap
        if bad:
            c.nonfinite[key] = bad[0] + 1
        setattr(c, attr, arr)
    if c.train is None and c.val is None and (c.train_acc is not None or c.val_acc is not None):
        c.loss_from_accuracy = True  # higher is better: use the error rate 1 - accuracy as the loss
        c.train = None if c.train_acc is None else 1.0 - c.train_acc
        c.val = None if c.val_acc is None else 1.0 - c.val_acc
        c.notes.append("no loss series: judged from 1 - accuracy")
        for key in ("train_accuracy", "val_accuracy"):  # standing in for the losses, NaN there is divergence
            bad = [i for i, v in enumerate(raw.get(key) or []) if _is_bad(v)]
            if bad and len(bad) < len(raw.get(key) or []):
                c.nonfinite[key] = bad[0] + 1
    elif c.val is None and c.val_acc is not None and np.isfinite(c.val_acc).sum() >= 2:
        c.val = 1.0 - c.val_acc  # a validation signal on another scale than train_loss: its rise still counts
        c.val_from_accuracy = True
        c.notes.append("no val_loss series: validation judged from 1 - val_accuracy")
    return c


def _is_bad(v: Any) -> bool:
    if v is None:
        return True
    try:
        return not math.isfinite(float(v))
    except (TypeError, ValueError):
        return True


def _all_finite(vals: Sequence[Any] | None) -> bool:
    return bool(vals) and not any(_is_bad(v) for v in vals or [])


def smooth(y: np.ndarray) -> np.ndarray:
    """Centred running median then running mean; the window grows with the curve's length."""
    n = len(y)
    w = 1 if n < 6 else 3 if n < 20 else 5 if n < 50 else 7
    if w == 1:
        return y.astype(float).copy()
    h = w // 2
    med = np.array([np.median(y[max(0, i - h) : i + h + 1]) for i in range(n)])
    return np.array([med[max(0, i - h) : i + h + 1].mean() for i in range(n)])


def tail_len(n: int) -> int:
    """Epochs that count as 'the last epochs' for slopes and end levels."""
    return max(2, min(10, round(n / 4)))


def _rel_noise(y: np.ndarray, ys: np.ndarray) -> float:
    """Typical epoch-to-epoch wobble around the smoothed curve, as a fraction of the curve's level."""
    if len(y) < 6:
        return 0.0
    resid = (y - ys) / np.maximum(np.abs(ys), _EPS)
    return float(1.4826 * np.median(np.abs(resid - np.median(resid))))


def _r(x: float | None, nd: int = 4) -> float | None:
    if x is None or not math.isfinite(x):
        return None
    return float(f"{x:.{nd}g}")


@dataclass
class Features:
    evidence: dict[str, Any]
    n: int
    # values the rules read (rounded copies go to the evidence)
    progress: float | None = None  # 1 - train end / reference start (0: no progress, 1: to zero)
    train_gaveback: float = 0.0  # how much of its progress the training loss gave back at the end
    train_worst_spike: float = 0.0  # largest give-back at any epoch
    first_epoch_blowup: float = 1.0  # first train loss / median of epochs 2-4
    first_loss: float | None = None
    explosive_jump: float = 1.0  # the same, for jumps back above half the first-epoch loss
    max_jump: float = 1.0  # largest train loss / best train loss before it (material jumps only)
    rest_progress: float | None = None  # progress from epoch 2 on
    val_rise: float | None = None  # (val end - val min) / val min, smoothed
    val_rise_of_drop: float | None = None  # the same rise as a fraction of val's earlier drop
    val_min_epoch: int | None = None
    since_min_frac: float | None = None
    val_noise: float = 0.0
    gap_ratio: float | None = None  # (val - train) / val at the end, smoothed
    gap_trend: float | None = None  # gap ratio at the end minus at val's minimum
    still_improving: float | None = None  # share of the total drop achieved in the last epochs
    val_still_improving: float | None = None
    oscillation: float = 0.0
    val_acc_drop: float | None = None  # val accuracy peak - end (fractions)
    chance_loss: float | None = None
    loss_floor: float = 0.0  # the lowest training loss the setting allows (label smoothing); 0 when none
    floor_source: str = ""
    # the floor estimated from training accuracy (``accuracy_floor``); the rules decide whether it applies
    acc_floor: float | None = None  # the loss a classifier equally unsure of every example has at that accuracy
    acc_floor_ratio: float | None = None  # training loss end / acc_floor (1: the loss is what the accuracy implies)
    acc_above_chance: float | None = None  # training accuracy's share of the way from chance (1/K) to 1
    progress_to_acc_floor: float | None = None  # ``progress`` measured towards acc_floor instead of loss_floor
    train_acc_end: float | None = None  # smoothed end levels of the accuracies, when logged
    val_acc_end: float | None = None
    val_size: int | None = None  # validation examples behind each val_loss value, when known
    val_sampling_error: float = 0.0  # relative standard error of one validation value from val_size alone


def smoothing_floor(label_smoothing: float, n_classes: int) -> float:
    """The lowest cross-entropy a model can reach on labels smoothed by eps over K classes.

    Label smoothing trains against the target q = (1 - eps) * one_hot + eps / K; the cross-entropy
    -sum_k q_k log p_k is smallest at p = q, where it equals the entropy of q:
    H(q) = -(1 - eps + eps/K) log(1 - eps + eps/K) - (K - 1) (eps/K) log(eps/K).
    E.g. eps = 0.1, K = 10: 0.50; eps = 0.2, K = 10: 0.87; eps = 0.1, K = 2: 0.20.
    """
    eps, k = float(label_smoothing), int(n_classes)
    if eps <= 0 or k < 2:
        return 0.0
    q_true, q_other = 1.0 - eps + eps / k, eps / k
    return float(-q_true * math.log(q_true) - (k - 1) * q_other * math.log(q_other))


def accuracy_floor(accuracy: float, n_classes: int) -> float:
    """The cross-entropy of a calibrated classifier equally sure of every example, at top-1 accuracy a over K classes.

    Such a model puts a on its answer and (1 - a) / (K - 1) on each other class, so its loss is the entropy
    -a ln a - (1 - a) ln((1 - a) / (K - 1)). That is exactly the least loss on labels with symmetric noise: when a
    share eta of the labels is replaced by a random class, a model that knows every clean label is right on
    a = 1 - eta + eta/K of them and can do no better than predict that target; it is the label-smoothing floor
    with eps = (1 - a) K / (K - 1). A model sure of its easy examples and unsure of its hard ones sits below it
    (entropy is concave), and one that is not yet sure of what it gets right sits above it.
    E.g. a = 0.82, K = 10: 0.87 (20% noise); a = 0.75, K = 10: 1.11; a = 0.99, K = 10: 0.078.
    """
    k = int(n_classes)
    if k < 2:
        return 0.0
    a = min(1.0, max(float(accuracy), 1.0 / k))  # below chance the uniform prediction, ln K, is the level
    return smoothing_floor((1.0 - a) * k / (k - 1), k)


def sampling_error(n: int, error_rate: float | None = None) -> float:
    """Relative standard error of a validation value computed over ``n`` examples.

    A mean loss: per-example losses spread about as much as their mean, so about 1/sqrt(n). An error rate
    e = 1 - accuracy (when accuracy stands in for the loss): binomial, sqrt(e (1 - e) / n) / e, which is far
    larger for a small error rate (e = 0.05 over 40 examples: 0.69; over 1,000: 0.14).
    """
    if error_rate is None:
        return 1.0 / math.sqrt(n)
    e = min(1.0, max(float(error_rate), 1.0 / n))  # no error seen yet: at most about one in n
    return math.sqrt((1.0 - e) / (e * n))


def measure(c: Curves, n_classes: int | None, *, label_smoothing: float | None = None,
            val_size: int | None = None) -> Features:
    """Compute the evidence for one trial from cleaned curves (needs >= MIN_EPOCHS finite training points).

    Args:
        c: the cleaned curves.
        n_classes: number of classes (chance-level loss ln K); None or 0 for regression/unknown.
        label_smoothing: the trial's label smoothing eps: the training loss cannot go below
            ``smoothing_floor(eps, K)``, so progress is measured towards that floor, not towards zero.
        val_size: validation examples per val_loss value: the sampling error of the validation loss.
    """
    n = c.n_epochs
    f = Features(evidence={"epochs": n}, n=n)
    ev = f.evidence
    chance = math.log(n_classes) if n_classes and n_classes > 1 and not c.loss_from_accuracy else None
    f.chance_loss = chance
    ev["chance_loss"] = _r(chance)
    if label_smoothing and n_classes and n_classes > 1 and not c.loss_from_accuracy:
        f.loss_floor = smoothing_floor(label_smoothing, n_classes)
        f.floor_source = f"label smoothing {label_smoothing:g} over {n_classes} classes"
        ev.update(train_loss_floor=_r(f.loss_floor), train_loss_floor_source=f.floor_source)
    if val_size:
        f.val_size = int(val_size)
        ev["val_size"] = f.val_size
    levels = _measure_train(c.train, f, chance) if c.train is not None else None
    if c.val is not None and np.isfinite(c.val).sum() >= MIN_EPOCHS:
        _measure_val(c, f)
    _measure_accuracy(c, f, n_classes)
    if levels is not None and n_classes and n_classes > 1 and not c.loss_from_accuracy:
        _measure_acc_floor(f, n_classes, *levels)
    if c.lr is not None and np.isfinite(c.lr).any():
        lr = c.lr[np.isfinite(c.lr)]
        ev["lr_first"], ev["lr_last"], ev["lr_max"] = _r(lr[0]), _r(lr[-1]), _r(lr.max())
    return f


def _progress(end: float, ref: float, floor: float, tmin: float) -> float:
    """Share of the way from ``ref`` (start or chance) down to ``floor`` that the loss's end level came."""
    # a floor above the lowest loss reached is not one (a wrong label_smoothing, an estimate a shade high)
    floor = min(floor, 0.999 * tmin)
    return 1.0 - (end - floor) / (ref - floor) if ref - floor > _EPS else 0.0


def _measure_train(train: np.ndarray, f: Features, chance: float | None) -> tuple[float, float, float] | None:
    """Measure the training loss; returns its (reference start, smoothed end, smoothed minimum) levels."""
    ev = f.evidence
    t = train[np.isfinite(train)]
    if len(t) < MIN_EPOCHS:
        return None
    ts = smooth(t)
    k = tail_len(len(t))
    start = max(t[0], ts[0])
    ref = max(start, chance) if chance else start
    end = float(ts[-k:].mean()) if len(t) < 8 else float(ts[-1])
    tmin = float(ts.min())
    f.progress = _progress(end, ref, f.loss_floor, tmin)
    # a curve that never got anywhere has no progress to give back: floor the span at 5% of the level
    span = max(ref - tmin, 0.05 * abs(ref), _EPS)
    f.train_gaveback = max(0.0, (end - tmin) / span)
    best_so_far = np.minimum.accumulate(t)
    spikes = (t[1:] - best_so_far[:-1]) / span
    f.train_worst_spike = float(max(0.0, spikes.max())) if len(spikes) else 0.0
    rest = float(np.median(t[1:4]))
    f.first_epoch_blowup = float(t[0] / rest) if rest > _EPS else 1.0
    f.rest_progress = 1.0 - end / max(t[1], _EPS)
    f.first_loss = float(t[0])
    med = float(np.median(t))
    prev = np.maximum(best_so_far[:-1], _EPS)
    jumps = [t[i] / prev[i - 1] for i in range(1, len(t))
             if best_so_far[i - 1] >= 0.01 * med and t[i] >= 0.1 * med]  # ignore wobbles of a loss near zero
    f.max_jump = float(max(jumps, default=1.0))
    # a jump back above half the first-epoch loss undoes the training: the mark of a blow-up
    big = [t[i] / prev[i - 1] for i in range(1, len(t)) if t[i] >= 0.5 * t[0]]
    f.explosive_jump = float(max(big, default=1.0))
    drop_total = max(ts[0] - tmin, 0.05 * abs(ts[0]), _EPS)
    f.still_improving = float((ts[-k - 1] - ts[-1]) / drop_total) if len(ts) > k else None
    f.oscillation = _log_wobble(t, ts)
    ev.update(train_loss_first=_r(float(t[0])), train_loss_end=_r(end), train_loss_min=_r(tmin),
              train_loss_vs_start=_r(end / start if start > _EPS else None),
              train_loss_vs_chance=_r(end / chance) if chance else None,
              train_progress=_r(f.progress), train_loss_gave_back=_r(f.train_gaveback),
              train_worst_spike=_r(f.train_worst_spike), first_epoch_blowup=_r(f.first_epoch_blowup),
              train_max_jump=_r(f.max_jump), train_explosive_jump=_r(f.explosive_jump),
              train_recent_share_of_drop=_r(f.still_improving),
              train_slope_last_epochs=_r(_slope(ts[-k:]) / max(abs(end), _EPS)),
              oscillation=_r(f.oscillation))
    return ref, end, tmin


def _measure_acc_floor(f: Features, n_classes: int, ref: float, end: float, tmin: float) -> None:
    """The loss floor estimated from training accuracy (``accuracy_floor``), and how the loss stands against it."""
    if f.train_acc_end is None or end <= _EPS:
        return
    f.acc_floor = accuracy_floor(f.train_acc_end, n_classes)
    f.acc_floor_ratio = end / f.acc_floor if f.acc_floor > _EPS else None
    f.acc_above_chance = (f.train_acc_end - 1.0 / n_classes) / (1.0 - 1.0 / n_classes)
    f.progress_to_acc_floor = _progress(end, ref, max(f.loss_floor, f.acc_floor), tmin)
    f.evidence.update(accuracy_implied_loss=_r(f.acc_floor), train_loss_vs_accuracy_implied=_r(f.acc_floor_ratio),
                      train_accuracy_above_chance=_r(f.acc_above_chance),
                      train_progress_to_accuracy_implied=_r(f.progress_to_acc_floor))


def _log_wobble(y: np.ndarray, ys: np.ndarray) -> float:
    """Robust spread of log(y / smoothed y): 0.1 means epochs typically sit ~10% off the trend."""
    if len(y) < 6:
        return 0.0
    r = np.log(np.maximum(y, _EPS)) - np.log(np.maximum(ys, _EPS))
    return float(1.4826 * np.median(np.abs(r - np.median(r))))


def _slope(y: np.ndarray) -> float:
    if len(y) < 2:
        return 0.0
    x = np.arange(len(y), dtype=float)
    return float(np.polyfit(x, y, 1)[0])


def _measure_val(c: Curves, f: Features) -> None:
    ev = f.evidence
    v_all = c.val if c.val is not None else np.array([])
    v = v_all[np.isfinite(v_all)]
    vs = smooth(v)
    k = tail_len(len(v))
    i_min = int(np.argmin(vs))
    vmin, vend = float(vs[i_min]), float(vs[-1])
    f.val_noise = _rel_noise(v, vs)
    if f.val_size:
        f.val_sampling_error = sampling_error(f.val_size, vmin if c.val_from_accuracy or c.loss_from_accuracy else None)
        ev["val_sampling_error"] = _r(f.val_sampling_error)
    f.val_min_epoch = int(np.flatnonzero(np.isfinite(v_all))[i_min]) + 1
    f.val_rise = (vend - vmin) / max(abs(vmin), _EPS)
    f.val_rise_of_drop = (vend - vmin) / max(vs[0] - vmin, 0.05 * abs(vs[0]), _EPS)
    f.since_min_frac = (len(v) - 1 - i_min) / max(len(v) - 1, 1)
    drop_total = max(vs[0] - vmin, 0.05 * abs(vs[0]), _EPS)
    f.val_still_improving = float((vs[-k - 1] - vs[-1]) / drop_total) if len(vs) > k else None
    ev.update(val_loss_first=_r(float(v[0])), val_loss_end=_r(vend), val_loss_min=_r(vmin),
              val_loss_min_epoch=f.val_min_epoch, val_loss_rise_since_min=_r(f.val_rise),
              val_loss_rise_of_drop=_r(f.val_rise_of_drop),
              epochs_since_val_min=len(v) - 1 - i_min,
              val_slope_last_epochs=_r(_slope(vs[-k:]) / max(abs(vend), _EPS)),
              val_recent_share_of_drop=_r(f.val_still_improving), val_noise=_r(f.val_noise))
    if c.train is not None and np.isfinite(c.train).sum() >= MIN_EPOCHS:
        m = min(len(c.train), len(v_all))
        both = np.isfinite(c.train[:m]) & np.isfinite(v_all[:m])
        if both.sum() >= MIN_EPOCHS:
            ts, vv = smooth(c.train[:m][both]), smooth(v_all[:m][both])
            if c.val_from_accuracy:  # different scales: compare how far each fell from its own start
                ts, vv = ts / max(abs(ts[0]), _EPS), vv / max(abs(vv[0]), _EPS)
            gap = (vv - ts) / np.maximum(np.abs(vv), _EPS)
            j_min = int(np.argmin(vv))
            f.gap_ratio, f.gap_trend = float(gap[-1]), float(gap[-1] - gap[j_min])
            ev.update(generalization_gap=_r(float(vv[-1] - ts[-1])), generalization_gap_ratio=_r(f.gap_ratio),
                      generalization_gap_trend=_r(f.gap_trend))


def _measure_accuracy(c: Curves, f: Features, n_classes: int | None) -> None:
    ev = f.evidence
    if n_classes and n_classes > 1:
        ev["chance_accuracy"] = _r(1.0 / n_classes)
    for name, acc in (("train_accuracy", c.train_acc), ("val_accuracy", c.val_acc)):
        if acc is None or np.isfinite(acc).sum() < MIN_EPOCHS:
            continue
        a = acc[np.isfinite(acc)]
        a_s = smooth(a)
        ev[f"{name}_end"] = _r(float(a_s[-1]))
        ev[f"{name}_best"] = _r(float(a.max()))
        setattr(f, "train_acc_end" if name == "train_accuracy" else "val_acc_end", float(a_s[-1]))
        if name == "val_accuracy":
            f.val_acc_drop = float(a_s.max() - a_s[-1])
            ev["val_accuracy_best_epoch"] = int(np.argmax(a_s)) + 1
            ev["val_accuracy_drop_since_best"] = _r(f.val_acc_drop)
    if "train_accuracy_end" in ev and "val_accuracy_end" in ev:
        ev["accuracy_gap"] = _r(ev["train_accuracy_end"] - ev["val_accuracy_end"])
