"""Findings from inside training: the ``signals/*`` metrics the built-in loop (or ``TrainingSignals``) logs.

Pure Python + numpy, fed from the stored per-epoch series like the learning curves. The curves decide the
verdict; these add findings, evidence and advice tied to the trial's settings: vanishing or exploding
gradients, non-finite tensors, dead or saturated units, a poor initialization, an update ratio that says
the learning rate is far too high or too low, a loss that does not decrease. Thresholds and how often each
finding fires on labelled runs: docs/diagnosis.md ("Signals from inside training").
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from hpo.diagnosis._advice import param
from hpo.diagnosis._verdict import Diagnosis
from trainers import signal_names as names

# -- thresholds (round numbers; the labelled runs of bench/diagnosis_signals.py check them) --------------
VANISHING_RATIO = 1e-3  # the first layer's gradient norm below 1/1000 of the last layer's (median over epochs)
VANISHING_NORM = 1e-6  # or the whole gradient below this while the loss has not reached zero
EXPLODING_X = 100.0  # the largest gradient norm 100x the median of the epochs' mean norms
DEAD_SHARE = 0.5  # half the ReLU units output 0 on every probe example (at the end; at init: poor init)
SATURATED_SHARE = 0.25  # a quarter of the tanh/sigmoid units sit in their flat zone (idem; healthy: < 5%)
UPDATE_TOO_LARGE = 0.1  # some epoch's steps change a layer group's weights by 10% of their norm
UPDATE_TOO_SMALL = 1e-5  # no epoch's steps change any group by more than a 100,000th: training stands still
NOT_DECREASING = 0.97  # the training loss ends above 97% of its first epoch's value

Found = tuple[str, str, list[str]]  # finding, one sentence of evidence, advice

FINDINGS = ("vanishing_gradients", "exploding_gradients", "non_finite_tensors", "dead_units", "saturated_units",
            "poor_initialization", "update_ratio_too_large", "update_ratio_too_small", "loss_not_decreasing")


def add_internal_findings(result: Diagnosis, curves: Mapping[str, Sequence[float | None]],
                          params: Mapping[str, Any] | None) -> Diagnosis:
    """``result`` with the findings of the trial's ``signals/*`` series (and its training loss) added.

    Args:
        result: the learning-curve diagnosis.
        curves: every per-epoch series of the trial; the signal series among them are read.
        params: the trial's flat hyperparameters, named in the advice.

    Returns:
        The diagnosis with findings, evidence (``inside_*`` keys), advice and one summary sentence added;
        ``result`` itself when there is nothing to add.
    """
    s = {k: _array(v) for k, v in curves.items() if names.is_signal(k) and v}
    found: list[Found] = []
    evidence: dict[str, Any] = {}
    for check in (_non_finite, _exploding, _vanishing, _units, _poor_init, _update_ratio):
        found += check(s, params or {}, evidence)
    found += _not_decreasing(_array(curves.get("train_loss") or []), result, params or {}, evidence)
    if not found:
        return result if not evidence else replace(result, evidence={**result.evidence, **_jsonable(evidence)})
    findings = list(result.findings) + [f for f, _, _ in found if f not in result.findings]
    advice = [a for _, _, recs in found for a in recs]
    recommendations = list(result.recommendations) + [a for i, a in enumerate(advice) if a not in advice[:i]]
    summary = (result.summary + " Inside training: " + "; ".join(s for _, s, _ in found) + ".").strip()
    return replace(result, findings=findings, recommendations=recommendations, summary=summary,
                   evidence={**result.evidence, **_jsonable(evidence)})


def _array(values: Sequence[float | None]) -> np.ndarray:
    return np.array([np.nan if v is None else float(v) for v in values], dtype=float)


def _finite(a: np.ndarray | None) -> np.ndarray:
    return np.array([]) if a is None else a[np.isfinite(a)]


def _g(x: float) -> str:
    return f"{x:.3g}"


def _lr(params: Mapping[str, Any]) -> tuple[str, float] | None:
    p = param(params, "lr")
    try:
        return (p[0], float(p[1])) if p else None
    except (TypeError, ValueError):
        return None


def _lower_lr(params: Mapping[str, Any], factor: float = 10.0) -> str:
    lr = _lr(params)
    return (f"Lower the learning rate: {lr[0]} is {_g(lr[1])} here; try {_g(lr[1] / factor)}." if lr else
            f"Lower the learning rate by {factor:g}x.")


def _non_finite(s: dict[str, np.ndarray], params: Mapping[str, Any], ev: dict[str, Any]) -> list[Found]:
    steps, weights = _finite(s.get(names.NONFINITE_GRAD_STEPS)), _finite(s.get(names.NONFINITE_WEIGHTS))
    if len(steps):
        ev["inside_nonfinite_grad_steps"] = float(steps.sum())
    if len(weights):
        ev["inside_nonfinite_weights_end"] = float(weights[-1])
    fp16 = str(params.get("precision", "")) == "fp16"
    bad_steps = float(steps.sum()) if len(steps) else 0.0
    bad_weights = float(weights.max()) if len(weights) else 0.0
    # fp16's GradScaler skips a step now and then by design: only a weight going NaN/inf counts there
    if bad_weights <= 0 and (bad_steps <= 0 or fp16):
        return []
    what = (f"{bad_weights:.0f} weights became NaN/inf" if bad_weights > 0 else
            f"{bad_steps:.0f} optimizer steps had NaN/inf gradients")
    advice = [_lower_lr(params)]
    if str(params.get("precision", "")) in ("fp16", "bf16"):
        advice.append(f"precision is {params['precision']} here: try fp32 to rule out overflow.")
    advice.append("Check inputs and targets for NaN/inf.")
    return [("non_finite_tensors", what, advice)]


def _exploding(s: dict[str, np.ndarray], params: Mapping[str, Any], ev: dict[str, Any]) -> list[Found]:
    typical, peak = _finite(s.get(names.GRAD_NORM)), _finite(s.get(names.GRAD_NORM_MAX))
    if not len(typical) or not len(peak) or float(np.median(typical)) <= 0:
        return []
    growth = float(peak.max() / np.median(typical))
    ev["inside_grad_norm_median"], ev["inside_grad_norm_peak"] = float(np.median(typical)), float(peak.max())
    if growth < EXPLODING_X:
        return []
    clip = _number(params.get("clip_norm"))
    clip_advice = (f"Clip gradients: clip_norm is 0 here; try {_g(float(np.median(typical)))} (the typical norm)."
                   if not clip else
                   f"clip_norm is {_g(clip)} here: clipping bounds the step, not the cause; lower the learning rate.")
    return [("exploding_gradients", f"the gradient norm peaked at {growth:.0f}x its typical value",
             [_lower_lr(params), clip_advice])]


def _number(value: Any) -> float | None:
    try:
        return None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None


def _vanishing(s: dict[str, np.ndarray], params: Mapping[str, Any], ev: dict[str, Any]) -> list[Found]:
    first, last = s.get(names.grad_norm_of("input")), s.get(names.grad_norm_of("output"))
    total = _finite(s.get(names.GRAD_NORM))
    ratio = None
    if first is not None and last is not None and names.grad_norm_of("hidden") in s:
        r = first / np.where(last > 0, last, np.nan)
        r = r[np.isfinite(r)]
        ratio = float(np.median(r)) if len(r) else None
        ev["inside_grad_input_to_output"] = ratio
    tiny = len(total) > 0 and float(np.median(total)) < VANISHING_NORM
    if not (ratio is not None and ratio < VANISHING_RATIO) and not tiny:
        return []
    what = (f"the first layer's gradient is {ratio:.1e} of the last layer's" if ratio is not None and
            ratio < VANISHING_RATIO else f"the gradient norm is {float(np.median(total)):.1e}")
    act = str(params.get("activation", ""))
    advice = [f"activation is {act} here: use relu or gelu, which do not squash the gradient." if act in
              ("sigmoid", "tanh") else "Use a non-saturating activation (relu, gelu)."]
    if params.get("batch_norm") is False or str(params.get("batch_norm")).lower() == "false":
        advice.append("batch_norm is false here: turn it on to keep each layer's inputs in range.")
    advice.append(_init_advice(params))
    return [("vanishing_gradients", what, advice)]


def _init_advice(params: Mapping[str, Any]) -> str:
    init = params.get("init")
    act = str(params.get("activation", "relu"))
    fit = "kaiming_normal" if act in ("relu", "gelu", "") else "xavier_normal"
    if init in (None, "default"):
        return f"Use an initialization scaled to the layer width: init {fit}."
    extra = f" (init_std {params['init_std']})" if init == "normal" and "init_std" in params else ""
    return f"init is {init}{extra} here: try {fit}, scaled to the layer width."


def _units(s: dict[str, np.ndarray], params: Mapping[str, Any], ev: dict[str, Any]) -> list[Found]:
    out: list[Found] = []
    for key, init_key, finding, limit, label in (
            (names.DEAD_RELU, names.INIT_DEAD_RELU, "dead_units", DEAD_SHARE, "dead"),
            (names.SATURATED, names.INIT_SATURATED, "saturated_units", SATURATED_SHARE, "saturated")):
        a, at_init = _finite(s.get(key)), _finite(s.get(init_key))
        if not len(a):
            continue
        ev[f"inside_{label}_end"] = float(a[-1])
        if a[-1] < limit:
            continue
        born = len(at_init) > 0 and at_init[0] >= limit
        kind = "ReLU" if label == "dead" else "tanh/sigmoid"
        what = f"{a[-1]:.0%} of the {kind} units are {label} at the end" + (" (already at initialization)" if born
                                                                              else "")
        act = str(params.get("activation", ""))
        if label == "dead":
            advice = [_init_advice(params) if born else _lower_lr(params),
                      "Use gelu (activation: gelu) so a unit pushed negative can recover."]
        else:
            advice = [f"activation is {act} here: relu or gelu do not saturate." if act in ("sigmoid", "tanh")
                      else "Use an activation that does not saturate (relu, gelu).", _init_advice(params)]
        out.append((finding, what, advice))
    return out


def _poor_init(s: dict[str, np.ndarray], params: Mapping[str, Any], ev: dict[str, Any]) -> list[Found]:
    """What the initial weights alone do, measured before the first step (the ``init_*`` signals)."""
    why = []
    for key, limit, label in ((names.INIT_DEAD_RELU, DEAD_SHARE, "ReLU units dead"),
                              (names.INIT_SATURATED, SATURATED_SHARE, "tanh/sigmoid units saturated")):
        a = _finite(s.get(key))
        if len(a):
            ev[f"inside_{key[len(names.PREFIX):]}"] = float(a[0])
            if a[0] >= limit:
                why.append(f"{a[0]:.0%} of the {label}")
    ratio = _finite(s.get(names.INIT_GRAD_RATIO))
    if len(ratio):
        ev["inside_init_grad_input_to_output"] = float(ratio[0])
        if ratio[0] < VANISHING_RATIO:
            why.append(f"the first layer's gradient {ratio[0]:.1e} of the last layer's")
    if not why:
        return []
    return [("poor_initialization", "at initialization, " + " and ".join(why), [_init_advice(params)])]


def _update_ratio(s: dict[str, np.ndarray], params: Mapping[str, Any], ev: dict[str, Any]) -> list[Found]:
    series = [s[names.update_ratio_of(g)] for g in names.GROUPS if names.update_ratio_of(g) in s]
    if not series:
        return []
    n = min(len(a) for a in series)
    # per epoch, the most-moved group; NaN there is an update that overflowed: as large as can be
    moved = np.array([np.nanmax([np.inf if np.isnan(a[i]) else a[i] for a in series]) for i in range(n)])
    largest, typical = float(moved.max()), float(np.median(moved))
    ev["inside_update_ratio_median"], ev["inside_update_ratio_max"] = typical, largest
    lr = _lr(params)
    if largest >= UPDATE_TOO_LARGE:
        size = "overflowed" if math.isinf(largest) else f"moved the weights by {largest:.0%} of their norm"
        return [("update_ratio_too_large", f"a step {size}", [_lower_lr(params, 10.0)])]
    if largest <= UPDATE_TOO_SMALL:
        raise_lr = (f"Raise the learning rate: {lr[0]} is {_g(lr[1])} here; try {_g(lr[1] * 100)}." if lr else
                    "Raise the learning rate by 100x.")
        return [("update_ratio_too_small", f"no step moved the weights by more than {largest:.1e} of their norm",
                 [raise_lr])]
    return []


def _not_decreasing(train: np.ndarray, result: Diagnosis, params: Mapping[str, Any], ev: dict[str, Any]) -> list[Found]:
    t = _finite(train)
    if len(t) < 3 or result.verdict == "diverged" or t[0] <= 0:
        return []
    end = float(np.median(t[-2:]))
    if end < NOT_DECREASING * float(t[0]):
        return []
    ev["inside_train_loss_end_vs_first"] = end / float(t[0])
    lr = _lr(params)
    return [("loss_not_decreasing", f"the training loss ended at {end / t[0]:.0%} of its first epoch's",
             [f"Check the learning rate ({lr[0]} is {_g(lr[1])} here): see the update ratio above." if lr else
              "Check the learning rate and that the loss is connected to the parameters being trained."])]


def _jsonable(ev: dict[str, Any]) -> dict[str, Any]:
    return {k: (None if isinstance(v, float) and not math.isfinite(v) else
                float(f"{v:.4g}") if isinstance(v, float) else v) for k, v in ev.items()}
