"""Produce labelled learning curves from real training runs, one regime per run, for hpo.diagnosis.

Each run trains a plain PyTorch MLP on offline data (sklearn digits / breast cancer / diabetes, mnist1d)
in a configuration *built* to land in one regime:

    overfit    too large a model on too little data, no regularization      -> overfitting
    capacity   too little capacity (a bottleneck of 1-2 units)               -> underfitting
    overreg    far too much regularization (weight decay, dropout)           -> underfitting
    smallstep  far too small a learning rate                                  -> underfitting
    bigstep    far too large a learning rate                                  -> diverged
    goodfit    right-sized, regularized model, early stopping on val loss     -> good_fit

The label comes from how the run was built; ``sanity_check`` then rejects any run whose curve does not show
the regime (e.g. an "overfit" run whose validation loss never rises), so no curve is mislabelled: a rejected
run is reported and not written. The checks are deliberately cruder than the diagnosis rules (they look at
the raw curve, with the knowledge of how the run was built) so they do not simply restate them.

Usage:  python bench/diagnosis_curves/make_curves.py [--out tests/data/diagnosis_curves] [--only digits]
Takes about 2-4 minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_OUT = ROOT / "tests" / "data" / "diagnosis_curves"
LABELS = {
    "overfit": "overfitting",
    "capacity": "underfitting",
    "overreg": "underfitting",
    "smallstep": "underfitting",
    "bigstep": "diverged",
    "goodfit": "good_fit",
}


@dataclass
class Data:
    name: str
    x: np.ndarray
    y: np.ndarray
    x_val: np.ndarray
    y_val: np.ndarray
    n_classes: int | None  # None: regression with MSE loss


@dataclass
class Run:
    regime: str
    config: str
    params: dict[str, Any]
    n_train: int | None = None  # None: the whole training split
    patience: int | None = None  # early stopping on val loss
    extra: dict[str, Any] = field(default_factory=dict)


def _standardize(x: np.ndarray, x_val: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    mu, sd = x.mean(0), x.std(0) + 1e-8
    return (x - mu) / sd, (x_val - mu) / sd


def load_data(name: str) -> Data:
    from sklearn.model_selection import train_test_split

    if name == "mnist1d":
        from mnist1d.data import get_dataset_args, make_dataset

        d = make_dataset(get_dataset_args())  # generated offline from templates
        x, y, xv, yv = d["x"], d["y"], d["x_test"], d["y_test"]
        x, xv = _standardize(x, xv)
        return Data(name, x, y, xv, yv, 10)
    from sklearn import datasets

    loader = {"digits": datasets.load_digits, "breast_cancer": datasets.load_breast_cancer,
              "diabetes": datasets.load_diabetes}[name]
    b = loader()
    x, xv, y, yv = train_test_split(b.data, b.target, test_size=0.3, random_state=0)
    x, xv = _standardize(x, xv)
    if name == "diabetes":
        mu, sd = y.mean(), y.std()
        return Data(name, x, (y - mu) / sd, xv, (yv - mu) / sd, None)
    return Data(name, x, y, xv, yv, int(b.target.max()) + 1)


def build_model(n_in: int, n_out: int, hidden: int, layers: int, dropout: float) -> nn.Module:
    mods: list[nn.Module] = []
    width = n_in
    for _ in range(layers):
        mods += [nn.Linear(width, hidden), nn.ReLU()]
        if dropout > 0:
            mods.append(nn.Dropout(dropout))
        width = hidden
    mods.append(nn.Linear(width, n_out))
    return nn.Sequential(*mods)


def _evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, loss_fn: Any, cls: bool) -> tuple[float, float]:
    model.eval()
    with torch.no_grad():
        out = model(x)
        loss = float(loss_fn(out, y))
        acc = float((out.argmax(1) == y).float().mean()) if cls else math.nan
    return loss, acc


def train(data: Data, run: Run, seed: int) -> dict[str, list[float]]:
    """Train one run; per-epoch train loss/accuracy are averages over the epoch's batches (as trainers log)."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    p = run.params
    cls = data.n_classes is not None
    idx = rng.permutation(len(data.x))[: run.n_train] if run.n_train else np.arange(len(data.x))
    x = torch.tensor(data.x[idx], dtype=torch.float32)
    xv = torch.tensor(data.x_val, dtype=torch.float32)
    if cls:
        y, yv = torch.tensor(data.y[idx], dtype=torch.long), torch.tensor(data.y_val, dtype=torch.long)
        loss_fn: Any = nn.CrossEntropyLoss()
        n_out = data.n_classes
    else:
        y = torch.tensor(data.y[idx], dtype=torch.float32)[:, None]
        yv = torch.tensor(data.y_val, dtype=torch.float32)[:, None]
        loss_fn, n_out = nn.MSELoss(), 1
    model = build_model(x.shape[1], n_out, p["hidden"], p["layers"], p["dropout"])
    if p["optimizer"] == "adam":
        opt: torch.optim.Optimizer = torch.optim.Adam(model.parameters(), lr=p["lr"], weight_decay=p["weight_decay"])
    else:
        opt = torch.optim.SGD(model.parameters(), lr=p["lr"], momentum=p.get("momentum", 0.0),
                              weight_decay=p["weight_decay"])
    sched = (torch.optim.lr_scheduler.CosineAnnealingLR(opt, p["epochs"]) if p.get("schedule") == "cosine"
             else None)
    hist: dict[str, list[float]] = {"train_loss": [], "val_loss": [], "lr": []}
    if cls:
        hist.update(train_accuracy=[], val_accuracy=[])
    best, since_best, bs = math.inf, 0, p["batch_size"]
    for _epoch in range(p["epochs"]):
        model.train()
        hist["lr"].append(opt.param_groups[0]["lr"])
        perm = torch.randperm(len(x))
        tot, correct = 0.0, 0
        for i in range(0, len(x), bs):
            b = perm[i : i + bs]
            out = model(x[b])
            loss = loss_fn(out, y[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            tot += float(loss.detach()) * len(b)
            if cls:
                correct += int((out.argmax(1) == y[b]).sum())
        hist["train_loss"].append(tot / len(x))
        vl, va = _evaluate(model, xv, yv, loss_fn, cls)
        hist["val_loss"].append(vl)
        if cls:
            hist["train_accuracy"].append(correct / len(x))
            hist["val_accuracy"].append(va)
        if sched is not None:
            sched.step()
        if run.patience is not None:  # early stopping on val loss, as a scheduler/callback would
            if vl < best - 1e-4:
                best, since_best = vl, 0
            else:
                since_best += 1
                if since_best >= run.patience:
                    break
        if not math.isfinite(hist["train_loss"][-1]) and len(hist["train_loss"]) >= 5:
            break  # trainers stop a run a few epochs after the loss turned NaN/inf
    return hist


def _p(lr: float, *, hidden: int = 64, layers: int = 2, dropout: float = 0.0, wd: float = 0.0, opt: str = "adam",
       epochs: int = 30, bs: int = 64, **kw: Any) -> dict[str, Any]:
    return {"lr": lr, "hidden": hidden, "layers": layers, "dropout": dropout, "weight_decay": wd,
            "optimizer": opt, "epochs": epochs, "batch_size": bs, **kw}


def runs_for(name: str) -> list[Run]:
    """The regimes per dataset; sizes chosen so each run lands clearly in its regime (see sanity_check)."""
    small = {"digits": 120, "mnist1d": 400, "breast_cancer": 40, "diabetes": 40}[name]
    R: list[Run] = []
    # too large a model on too little data, no regularization
    R += [Run("overfit", "mlp512x3_adam", _p(1e-3, hidden=512, layers=3, epochs=60, bs=32), n_train=small),
          Run("overfit", "mlp256x3_adam_lr3e-3", _p(3e-3, hidden=256, layers=3, epochs=50, bs=16), n_train=small),
          Run("overfit", "mlp1024x2_sgdm", _p(0.05, hidden=1024, layers=2, epochs=60, bs=16, opt="sgd",
                                              momentum=0.9), n_train=small)]
    if name != "diabetes":  # a near-linear regression target: a bottleneck does not starve it
        w = 1 if name != "mnist1d" else 2
        R += [Run("capacity", f"bottleneck{w}_adam", _p(1e-2, hidden=w, layers=1, epochs=30)),
              Run("capacity", f"bottleneck{w}x2_adam", _p(5e-3, hidden=w, layers=2, epochs=40))]
    R += [Run("overreg", "drop0.9", _p(1e-3, hidden=64, layers=2, dropout=0.9, epochs=30)),
          Run("overreg", "wd0.2_drop0.5", _p(1e-3, hidden=128, layers=2, dropout=0.5, wd=0.2, epochs=30)),
          Run("overreg", "sgd_wd2", _p(0.05, hidden=128, layers=2, wd=2.0, opt="sgd", momentum=0.9, epochs=25))]
    R += [Run("smallstep", "sgd_lr1e-3", _p(1e-3, hidden=128, layers=2, opt="sgd", epochs=30)),
          Run("smallstep", "sgd_lr1e-4", _p(1e-4, hidden=256, layers=2, opt="sgd", epochs=40)),
          Run("smallstep", "adam_lr1e-5", _p(1e-5, hidden=128, layers=2, epochs=40))]
    R += [Run("bigstep", "sgd_lr50", _p(50.0, hidden=64, layers=2, opt="sgd", epochs=20)),
          Run("bigstep", "sgdm_lr0.5_deep", _p(0.5, hidden=128, layers=3, opt="sgd", momentum=0.9, epochs=25)),
          Run("bigstep", "adam_lr1", _p(1.0, hidden=256, layers=3, epochs=30)),
          Run("bigstep", "adam_lr0.1", _p(0.1, hidden=256, layers=3, epochs=30)),
          Run("bigstep", "sgd_lr1.5", _p(1.5, hidden=128, layers=2, opt="sgd", epochs=30))]
    R += [Run("goodfit", "mlp128_drop0.2_es", _p(1e-3, hidden=128, layers=2, dropout=0.2, wd=1e-4, epochs=80),
              patience=4),
          Run("goodfit", "mlp64_wd1e-3_es", _p(2e-3, hidden=64, layers=2, dropout=0.1, wd=1e-3, epochs=80),
              patience=3),
          Run("goodfit", "mlp128_cosine", _p(1e-3, hidden=128, layers=2, dropout=0.3, wd=1e-3, epochs=25,
                                             schedule="cosine"), patience=6)]
    return R


def _finite(v: list[float]) -> np.ndarray:
    a = np.asarray(v, dtype=float)
    return a[np.isfinite(a)]


def sanity_check(regime: str, h: dict[str, list[float]], n_classes: int | None) -> str | None:
    """Return why the curve does *not* show the regime it was built for, or None when it does."""
    tl, vl = np.asarray(h["train_loss"], float), np.asarray(h["val_loss"], float)
    ok_t = _finite(h["train_loss"])
    if regime == "bigstep":
        if not np.all(np.isfinite(tl)) or not np.all(np.isfinite(vl)):
            return None
        chance = math.log(n_classes) if n_classes else 1.0
        if ok_t[0] > 5 * chance:
            return None  # exploded within the first epoch
        if any(ok_t[i] > 2 * ok_t[:i].min() and ok_t[i] > 0.5 * ok_t[0] for i in range(1, len(ok_t))):
            return None  # training loss more than doubled from its best and climbed back near its start
        return "training loss neither exploded nor rose from its best"
    if not (np.all(np.isfinite(tl)) and np.all(np.isfinite(vl))):
        return "non-finite loss in a run not built to diverge"
    vmin, k = vl.min(), int(vl.argmin())
    if regime == "overfit":
        if k < len(vl) - 5 and vl[-3:].mean() > 1.15 * vmin and tl[-1] < 0.5 * vl[-1]:
            return None
        return f"val loss did not clearly rise after its minimum (min {vmin:.3g} at {k + 1}, end {vl[-1]:.3g})"
    chance = math.log(n_classes) if n_classes else 1.0  # MSE of predicting the mean on a standardized target
    if regime in ("capacity", "overreg", "smallstep"):
        if vl[-3:].mean() > 1.15 * vmin:
            return "val loss rose: overfits rather than underfits"
        acc = h.get("train_accuracy")
        if tl[-1] > 0.4 * chance or (acc and acc[-1] < 0.8):
            return None
        return f"training loss reached {tl[-1]:.3g} (chance {chance:.3g}): not starved"
    if regime == "goodfit":
        if vl[-1] > 1.1 * vmin:
            return "val loss rose more than 10% before stopping"
        if vmin > 0.7 * chance:
            return "val loss stayed high"
        return None
    raise ValueError(regime)


def _best_val(rec: dict[str, Any]) -> float:
    return min((v for v in rec["history"]["val_loss"] if v is not None and math.isfinite(v)), default=math.inf)


def _drop_poor_goodfits(recs: list[tuple[Path, dict[str, Any]]]) -> list[tuple[Path, dict[str, Any]]]:
    """A 'good fit' must be good: its best val loss near the best that any non-diverging run reached on the
    dataset (within 10%, plus 5% of chance-level loss for datasets whose best loss is close to zero)."""
    best = min((_best_val(r) for _, r in recs if r["regime"] != "bigstep"), default=math.inf)
    out = []
    for path, rec in recs:
        chance = math.log(rec["n_classes"]) if rec["n_classes"] else 1.0
        if rec["regime"] == "goodfit" and _best_val(rec) > 1.1 * best + 0.05 * chance:
            print(f"REJECT {rec['dataset']}/{path.stem}: best val loss {_best_val(rec):.3g} is more than 10% "
                  f"above the dataset's best {best:.3g} (+5% of chance level): not a good fit")
            continue
        out.append((path, rec))
    return out


def _round(v: float) -> float | None:
    if not math.isfinite(v):
        return None if math.isnan(v) else v
    return float(f"{v:.5g}")


def _jsonable(h: dict[str, list[float]]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for key, vals in h.items():
        # json.dumps writes inf as Infinity; NaN becomes null (what MLflow readers hand us too)
        out[key] = [_round(v) for v in vals]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--only", nargs="*", default=["digits", "mnist1d", "breast_cancer", "diabetes"])
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    kept = rejected = 0
    for name in args.only:
        kept_here: list[tuple[Path, dict[str, Any]]] = []
        data = load_data(name)
        folder = args.out / name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.glob("*.json"):
            old.unlink()
        for run in runs_for(name):
            for seed in args.seeds:
                hist = train(data, run, seed)
                why = sanity_check(run.regime, hist, data.n_classes)
                tag = f"{name}/{run.regime}__{run.config}_s{seed}"
                if why:
                    rejected += 1
                    print(f"REJECT {tag}: {why}")
                    continue
                rec = {"label": LABELS[run.regime], "dataset": name, "regime": run.regime,
                       "params": {**run.params, "seed": seed, "n_train": run.n_train or len(data.x),
                                  "early_stopping_patience": run.patience},
                       "n_classes": data.n_classes, "val_size": len(data.y_val), "history": _jsonable(hist)}
                kept_here.append((folder / f"{run.regime}__{run.config}_s{seed}.json", rec))
                print(f"ok     {tag}: {len(hist['train_loss'])} epochs  ({time.time() - t0:.0f}s)")
        for path, rec in _drop_poor_goodfits(kept_here):
            path.write_text(json.dumps(rec, separators=(",", ":")) + "\n")
            kept += 1
    print(f"kept {kept}, rejected {rejected}, {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
