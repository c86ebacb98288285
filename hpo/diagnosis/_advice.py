"""Recommendations from standard practice, tied to the trial's own hyperparameters where they are known."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# Common spellings of the hyperparameters the advice talks about; nested keys ("model.dropout") match too.
ALIASES: dict[str, tuple[str, ...]] = {
    "lr": ("lr", "learning_rate", "learningrate", "base_lr", "max_lr"),
    "weight_decay": ("weight_decay", "wd", "l2", "l2_reg", "decay"),
    "dropout": ("dropout", "dropout_rate", "p_dropout", "drop_rate"),
    "hidden": ("hidden", "hidden_size", "hidden_dim", "width", "units", "hidden_units", "d_model"),
    "layers": ("layers", "num_layers", "n_layers", "depth"),
    "epochs": ("epochs", "max_epochs", "num_epochs", "n_epochs"),
    "batch_size": ("batch_size", "batch", "bs"),
    "optimizer": ("optimizer", "optim", "opt"),
    "momentum": ("momentum",),
    "grad_clip": ("grad_clip", "clip_grad_norm", "max_grad_norm", "gradient_clip_val", "clip"),
    "warmup": ("warmup", "warmup_epochs", "warmup_steps"),
    "n_train": ("n_train", "train_size", "num_train", "subset"),
    "label_smoothing": ("label_smoothing", "label_smooth", "smoothing"),
}


def param(params: Mapping[str, Any] | None, name: str) -> tuple[str, Any] | None:
    """(key as the user spelled it, value) for a known hyperparameter, or None."""
    if not params:
        return None
    names = ALIASES[name]
    for key, value in params.items():
        leaf = str(key).replace("/", ".").split(".")[-1].lower()
        if leaf in names and value is not None:
            return str(key), value
    return None


def number(p: tuple[str, Any] | None) -> float | None:
    if p is None or isinstance(p[1], bool):
        return None
    try:
        return float(p[1])
    except (TypeError, ValueError):
        return None


def _g(x: float) -> str:
    return f"{x:g}"


def advise(verdict: str, findings: list[str], evidence: Mapping[str, Any],
           params: Mapping[str, Any] | None) -> list[str]:
    """Concrete next steps for the verdict, naming the trial's params ("dropout is 0 here")."""
    recs = _for_verdict(verdict, findings, evidence, params)
    if "label_noise_floor" in findings:  # whatever the verdict: the floor the estimate says labels set
        recs.append("The loss levels off where label noise would hold it: check a sample of the labels; if "
                    "they are clean, a larger model may fit better.")
    return recs


def _for_verdict(verdict: str, findings: list[str], evidence: Mapping[str, Any],
                 params: Mapping[str, Any] | None) -> list[str]:
    if verdict == "overfitting":
        return _overfitting(evidence, params)
    if verdict == "underfitting":
        return _underfitting(findings, params)
    if verdict == "diverged":
        return _diverged(params)
    if verdict == "good_fit":
        recs = ["Nothing to fix: keep this configuration as a baseline."]
        if "still_improving" in findings:
            recs.append("Losses were still falling slowly: a few more epochs may help a little.")
        if "no_validation" in findings:
            recs.append("Log a validation loss so overfitting can be checked.")
        return recs
    return ["Run more epochs (at least 3) before judging the curves."]


def _overfitting(ev: Mapping[str, Any], params: Mapping[str, Any] | None) -> list[str]:
    recs: list[str] = []
    k = ev.get("val_loss_min_epoch")
    if k:
        recs.append(f"Stop at epoch {k} (where validation loss bottomed out), or use early stopping on "
                    "val_loss with a patience of 3-5 epochs.")
    wd, wdv = param(params, "weight_decay"), number(param(params, "weight_decay"))
    if wd is not None and wdv is not None:
        recs.append(f"{wd[0]} is 0 here: add weight decay (1e-4 to 1e-2)." if wdv == 0 else
                    f"Raise {wd[0]} from {_g(wdv)} to about {_g(wdv * 10)}.")
    else:
        recs.append("Add or strengthen weight decay (e.g. 1e-4 to 1e-2).")
    dp, dpv = param(params, "dropout"), number(param(params, "dropout"))
    if dp is not None and dpv is not None:
        recs.append(f"{dp[0]} is 0 here: add dropout of 0.2-0.5." if dpv == 0 else
                    f"Raise {dp[0]} from {_g(dpv)} to about {_g(min(0.6, dpv + 0.2))}." if dpv < 0.5 else
                    f"{dp[0]} is already {_g(dpv)}: rely on weight decay, a smaller model or more data.")
    else:
        recs.append("Add dropout (0.2-0.5) and data augmentation.")
    recs.append(_smaller_model(params))
    n = number(param(params, "n_train"))
    recs.append(f"Train on more data (only {n:g} training examples here) or augment it." if n else
                "Train on more data or augment it.")
    return recs


def _smaller_model(params: Mapping[str, Any] | None) -> str:
    h, hv = param(params, "hidden"), number(param(params, "hidden"))
    la, lav = param(params, "layers"), number(param(params, "layers"))
    parts = []
    if h is not None and hv is not None and hv >= 8:
        parts.append(f"{h[0]} {_g(hv)} -> {_g(max(4, hv // 2))}")
    if la is not None and lav is not None and lav > 1:
        parts.append(f"{la[0]} {_g(lav)} -> {_g(lav - 1)}")
    return ("Use a smaller model: " + ", ".join(parts) + ".") if parts else "Use a smaller model."


def _underfitting(findings: list[str], params: Mapping[str, Any] | None) -> list[str]:
    recs: list[str] = []
    lr, lrv = param(params, "lr"), number(param(params, "lr"))
    ep, epv = param(params, "epochs"), number(param(params, "epochs"))
    stopped = "stopped_early" in findings
    if stopped:
        recs.append("The sweep's scheduler stopped this trial because it lagged the others at the same epoch: "
                    "a slow start, not a lack of epochs, is what the curves show.")
    if "still_improving" in findings:
        recs.append(f"Losses were still falling: raise {lr[0]} from {_g(lrv)} to about {_g(lrv * 10)}."
                    if lr and lrv else "Losses were still falling: use a higher learning rate (try 10x).")
        if not stopped:
            recs.append(f"Train longer: {ep[0]} is {_g(epv)} here; try {_g(epv * 3)}." if ep and epv else
                        "Train for more epochs.")
    dp, dpv = param(params, "dropout"), number(param(params, "dropout"))
    wd, wdv = param(params, "weight_decay"), number(param(params, "weight_decay"))
    if dp and dpv and dpv >= 0.3:
        recs.append(f"Less regularization: {dp[0]} is {_g(dpv)} here; try {_g(round(max(0.0, dpv - 0.4), 2))}.")
    if wd and wdv and wdv >= 1e-2:
        recs.append(f"Less regularization: {wd[0]} is {_g(wdv)} here; try {_g(wdv / 100)}.")
    if not any(r.startswith("Less regularization") for r in recs) and (dp is None and wd is None):
        recs.append("Reduce regularization (weight decay, dropout) if any is applied.")
    h, hv = param(params, "hidden"), number(param(params, "hidden"))
    la, lav = param(params, "layers"), number(param(params, "layers"))
    parts = []
    if h and hv is not None:
        parts.append(f"{h[0]} {_g(hv)} -> {_g(max(16, hv * 4) if hv < 16 else hv * 2)}")
    if la and lav is not None and lav < 4:
        parts.append(f"{la[0]} {_g(lav)} -> {_g(lav + 1)}")
    recs.append(("Use a larger model: " + ", ".join(parts) + ".") if parts else "Use a larger model.")
    if "still_improving" not in findings:
        longer = "" if stopped else ", or train longer"
        recs.append(f"Try a higher learning rate than {lr[0]}={_g(lrv)}{longer}." if lr and lrv else
                    f"Try a higher learning rate{longer}.")
    return recs


def _diverged(params: Mapping[str, Any] | None) -> list[str]:
    recs: list[str] = []
    lr, lrv = param(params, "lr"), number(param(params, "lr"))
    recs.append(f"Lower the learning rate: {lr[0]} is {_g(lrv)} here; try {_g(lrv / 10)} or less." if lr and lrv
                else "Lower the learning rate by 10x or more.")
    gc, gcv = param(params, "grad_clip"), number(param(params, "grad_clip"))
    recs.append(f"Clip gradients harder: {gc[0]} is {_g(gcv)}; try 1.0." if gc and gcv else
                "Clip gradients (e.g. max norm 1.0).")
    wu = param(params, "warmup")
    recs.append("Use a learning-rate warmup over the first epochs." if wu is None or not number(wu) else
                f"Lengthen the warmup ({wu[0]} is {wu[1]}).")
    mo, mov = param(params, "momentum"), number(param(params, "momentum"))
    if mo and mov and mov >= 0.9:
        recs.append(f"{mo[0]} is {_g(mov)}: with a large step, lower it or the learning rate.")
    recs.append("Check inputs and targets for NaN/inf and unnormalized scales.")
    return recs
