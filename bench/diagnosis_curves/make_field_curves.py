"""Labelled learning curves from the *built-in trainer* (trainers.loop.fit): the field beyond small MLPs.

Where ``make_curves.py`` trains plain MLPs, this script trains what users of the built-in tasks run: CNN, GRU
and transformer models on MNIST-1D and an MLP on diabetes (regression), with cosine, one-cycle and warm-up
schedules, label smoothing, noisy labels (a share of training *and* validation labels replaced by random
classes, as in a noisily labelled dataset), small validation sets (40-100 examples), and partial histories
(losses only, accuracy only) cut from the same runs, as a trainer that logs less would report them.

Labels come from how a run is built (the regimes of make_curves.py: overfit, capacity, overreg, smallstep,
bigstep, goodfit) and ``make_curves.sanity_check`` rejects a run whose raw curve does not show its regime; a
"goodfit" run must also reach a validation accuracy within 5 points of the best any run of its task, model and
label noise reached (classification) or a validation loss within 10% of it (regression). Every kept curve also carries
``label_check``: the human-readable facts the label rests on (best/end validation loss and accuracy, epoch of
the best), so a reader can check a label without trusting the rules under test.

Usage:  nice -n 10 python bench/diagnosis_curves/make_field_curves.py [--seeds 0 1]
            [--out tests/data/diagnosis_curves/field]
About 7 minutes per seed on one free core (torch is held to one thread).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from make_curves import LABELS, _jsonable, sanity_check  # noqa: E402

from trainers.data import TaskData  # noqa: E402
from trainers.loop import Diverged, fit  # noqa: E402
from trainers.tasks import load_task  # noqa: E402

DEFAULT_OUT = ROOT / "tests" / "data" / "diagnosis_curves" / "field"
CURVE_KEYS = ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr")


@dataclass(frozen=True)
class FieldRun:
    regime: str
    name: str
    task: str  # mnist1d | diabetes
    config: dict[str, Any]
    label_noise: float = 0.0  # share of train and val labels replaced by a random class
    val_size: int | None = None  # keep only this many validation examples (a fixed random subset)
    partial: str | None = None  # also write a "lossonly" / "acconly" copy of the history


def _cfg(model: str, lr: float, epochs: int, **kw: Any) -> dict[str, Any]:
    return {"model": model, "lr": lr, "epochs": epochs, "batch_size": 64, "hidden": 32, "layers": 2,
            "dropout": 0.0, "optimizer": "adam", **kw}


def field_runs() -> list[FieldRun]:
    """Runs per regime; mnist1d runs use a share of its 4,000 training sequences to stay cheap."""
    small = {"train_fraction": 0.05, "batch_size": 16}  # 200 training sequences, small batches
    r: list[FieldRun] = []
    # -- good fits: regularized, right-sized, early stopping on val_loss, modern schedules -----------------
    r += [FieldRun("goodfit", "cnn_cosine_ls0.1", "mnist1d",
                   _cfg("cnn", 3e-3, 30, layers=3, scheduler="cosine", label_smoothing=0.1, weight_decay=1e-4,
                        patience=4, train_fraction=0.5), partial="lossonly"),
          FieldRun("goodfit", "cnn_onecycle_ls0.2", "mnist1d",
                   _cfg("cnn", 5e-3, 25, layers=3, scheduler="onecycle", label_smoothing=0.2, patience=5,
                        train_fraction=0.5), partial="acconly"),
          FieldRun("goodfit", "gru_warmup_cosine", "mnist1d",
                   _cfg("gru", 5e-3, 30, hidden=48, layers=1, scheduler="cosine", warmup_epochs=2, patience=4,
                        train_fraction=0.5)),
          FieldRun("goodfit", "transformer_warmup_cosine", "mnist1d",
                   _cfg("transformer", 2e-3, 30, scheduler="cosine", warmup_epochs=3, weight_decay=1e-4,
                        patience=4, train_fraction=0.5), partial="lossonly"),
          FieldRun("goodfit", "cnn_noisy20", "mnist1d",
                   _cfg("cnn", 3e-3, 30, layers=3, dropout=0.2, patience=4, train_fraction=0.5), label_noise=0.2),
          FieldRun("goodfit", "cnn_ls0.1_val40", "mnist1d",
                   _cfg("cnn", 3e-3, 25, layers=3, scheduler="cosine", label_smoothing=0.1, patience=6,
                        train_fraction=0.5), val_size=40, partial="acconly"),
          FieldRun("goodfit", "mlp_warmup_cosine", "diabetes",
                   _cfg("mlp", 3e-3, 60, hidden=32, dropout=0.1, weight_decay=1e-3, scheduler="cosine",
                        warmup_epochs=3, patience=5))]
    # -- overfitting: too large a model on 200 sequences, no regularization ----------------------------
    r += [FieldRun("overfit", "cnn64_small", "mnist1d", _cfg("cnn", 3e-3, 60, hidden=64, layers=3, **small)),
          FieldRun("overfit", "gru64_small", "mnist1d", _cfg("gru", 5e-3, 60, hidden=64, layers=1, **small),
                   partial="lossonly"),
          FieldRun("overfit", "transformer64_small", "mnist1d", _cfg("transformer", 2e-3, 60, hidden=64, **small)),
          FieldRun("overfit", "cnn64_small_ls0.1", "mnist1d",
                   _cfg("cnn", 3e-3, 60, hidden=64, layers=3, label_smoothing=0.1, **small), partial="acconly"),
          FieldRun("overfit", "cnn64_small_val100", "mnist1d", _cfg("cnn", 3e-3, 60, hidden=64, layers=3, **small),
                   val_size=100),
          FieldRun("overfit", "cnn64_noisy20_small", "mnist1d",
                   _cfg("cnn", 3e-3, 60, hidden=64, layers=3, batch_size=16, train_fraction=0.1), label_noise=0.2),
          FieldRun("overfit", "mlp256x3_onecycle_small", "diabetes",
                   _cfg("mlp", 3e-3, 60, hidden=256, layers=3, batch_size=16, scheduler="onecycle",
                        train_fraction=0.15))]
    # -- underfitting: too small a step, too little capacity, too much regularization -----------------
    r += [FieldRun("smallstep", "cnn_adam_lr1e-5", "mnist1d", _cfg("cnn", 1e-5, 20, train_fraction=0.25),
                   partial="acconly"),
          FieldRun("capacity", "gru_hidden2", "mnist1d", _cfg("gru", 5e-3, 20, hidden=2, layers=1,
                                                              train_fraction=0.25)),
          FieldRun("smallstep", "transformer_lr1e-5_cosine", "mnist1d",
                   _cfg("transformer", 1e-5, 20, scheduler="cosine", train_fraction=0.25), partial="lossonly"),
          FieldRun("capacity", "cnn_width2", "mnist1d", _cfg("cnn", 5e-3, 20, hidden=2, layers=1,
                                                             train_fraction=0.25)),
          FieldRun("overreg", "cnn_wd0.5", "mnist1d", _cfg("cnn", 3e-3, 20, weight_decay=0.5, train_fraction=0.25)),
          FieldRun("smallstep", "mlp_sgd_lr1e-4", "diabetes", _cfg("mlp", 1e-4, 40, optimizer="sgd", momentum=0.0)),
          FieldRun("overreg", "mlp_drop0.9_wd0.3", "diabetes", _cfg("mlp", 1e-3, 40, dropout=0.9, weight_decay=0.3))]
    # -- divergence: far too large a step ---------------------------------------------------------------
    r += [FieldRun("bigstep", "cnn_sgd_lr50", "mnist1d", _cfg("cnn", 50.0, 15, optimizer="sgd", momentum=0.0,
                                                              train_fraction=0.25)),
          FieldRun("bigstep", "transformer_adam_lr0.5", "mnist1d",
                   _cfg("transformer", 0.5, 15, train_fraction=0.25), partial="acconly"),
          FieldRun("bigstep", "gru_sgdm_lr5", "mnist1d", _cfg("gru", 5.0, 15, optimizer="sgd", momentum=0.9,
                                                              train_fraction=0.25)),
          FieldRun("bigstep", "cnn_onecycle_sgd_lr20", "mnist1d",
                   _cfg("cnn", 20.0, 15, optimizer="sgd", momentum=0.9, scheduler="onecycle", train_fraction=0.25)),
          FieldRun("bigstep", "mlp_sgd_lr3", "diabetes", _cfg("mlp", 3.0, 30, optimizer="sgd", momentum=0.9))]
    return r


def task_data(run: FieldRun, seed: int) -> TaskData:
    """The task's split, with noisy labels and a smaller validation set when the run asks for them."""
    data = load_task(run.task, dict(run.config))
    gen = torch.Generator().manual_seed(1000 + seed)
    if run.label_noise > 0:
        def noisy(y: torch.Tensor) -> torch.Tensor:
            flip = torch.rand(len(y), generator=gen) < run.label_noise
            return torch.where(flip, torch.randint(0, data.n_classes, (len(y),), generator=gen), y)

        data = replace(data, y_train=noisy(data.y_train), y_val=noisy(data.y_val))
    if run.val_size is not None:
        keep = torch.randperm(len(data.y_val), generator=gen)[: run.val_size]
        data = replace(data, x_val=data.x_val[keep], y_val=data.y_val[keep])
    return data


def train(run: FieldRun, seed: int) -> tuple[dict[str, list[float]], TaskData, str | None]:
    """The run's per-epoch curves as the trainer reported them, its data, and the Diverged error if any."""
    data = task_data(run, seed)
    hist: dict[str, list[float]] = {}

    def report(metrics: dict[str, float], checkpoint: Any = None) -> None:
        for key in CURVE_KEYS:
            if key in metrics:
                hist.setdefault(key, []).append(float(metrics[key]))

    try:
        fit({**run.config, "seed": seed}, report, data=data)
    except Diverged as e:
        # the epoch that diverged never reaches a report; it is written as NaN, as the one diagnosis path
        # (diagnose_trial) appends one for a trial that FAILED with a non-finite loss
        for key in ("train_loss", "val_loss"):
            hist.setdefault(key, []).append(math.nan)
        return hist, data, f"Diverged: {e}"
    return hist, data, None


def label_check(h: dict[str, list[float]]) -> dict[str, Any]:
    """What the label rests on, in numbers a reader can check against the regime."""
    vl = np.asarray(h.get("val_loss", []), float)
    out: dict[str, Any] = {"epochs": len(h.get("train_loss", []))}
    if len(vl) and np.isfinite(vl).any():
        k = int(np.nanargmin(vl))
        end = float(vl[-1])
        out.update(val_loss_best=round(float(vl[k]), 4), val_loss_best_epoch=k + 1,
                   val_loss_end=round(end, 4) if math.isfinite(end) else None)
    for key in ("train_accuracy", "val_accuracy"):
        if h.get(key):
            out[f"{key}_best"], out[f"{key}_end"] = round(max(h[key]), 4), round(h[key][-1], 4)
    return out


def _check(run: FieldRun, h: dict[str, list[float]], n_classes: int | None) -> str | None:
    if run.regime != "bigstep" and (not h.get("train_loss") or len(h["train_loss"]) < 3):
        return "fewer than 3 epochs"  # a run that blew up in its first epochs is the clearest divergence
    return sanity_check(run.regime, h, n_classes)


def _good_enough(recs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A 'good fit' must be good for its task, architecture and setting: within 5 accuracy points (10% of loss
    for regression) of the best that any non-diverging run of the same task, model, label noise and seed reached
    (a GRU is not held to what a CNN reaches on MNIST-1D)."""
    out = []
    for rec in recs:
        if rec["regime"] != "goodfit":
            out.append(rec)
            continue
        peers = [r for r in recs if r["regime"] != "bigstep" and all(
            r[k] == rec[k] for k in ("task", "label_noise")) and r["params"]["model"] == rec["params"]["model"]
            and r["params"]["seed"] == rec["params"]["seed"]]
        lc = rec["label_check"]
        if rec["n_classes"]:
            best = max(r["label_check"].get("val_accuracy_best", 0.0) for r in peers)
            ok = lc["val_accuracy_best"] >= best - 0.05
        else:
            best = min(r["label_check"].get("val_loss_best", math.inf) for r in peers)
            ok = lc["val_loss_best"] <= 1.1 * best
        if ok:
            out.append(rec)
        else:
            print(f"REJECT {rec['file']}: not within reach of the task's best ({best:.3g}): not a good fit")
    return out


def _partial(h: dict[str, list[Any]], kind: str) -> dict[str, list[Any]]:
    keep = ("train_loss", "val_loss", "lr") if kind == "lossonly" else ("train_accuracy", "val_accuracy", "lr")
    return {k: v for k, v in h.items() if k in keep}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--seeds", type=int, nargs="*", default=[0, 1])
    args = ap.parse_args()
    torch.set_num_threads(1)
    t0 = time.time()
    recs: list[dict[str, Any]] = []
    for run in field_runs():
        for seed in args.seeds:
            hist, data, error = train(run, seed)
            n_classes = data.n_classes or None
            tag = f"{run.regime}__{run.task}_{run.name}_s{seed}"
            why = _check(run, hist, n_classes)
            if why:
                print(f"REJECT {tag}: {why}  ({time.time() - t0:.0f}s)")
                continue
            recs.append({"file": tag, "label": LABELS[run.regime], "dataset": "field", "task": run.task,
                         "regime": run.regime, "params": {**run.config, "seed": seed}, "n_classes": n_classes,
                         "val_size": len(data.y_val), "label_noise": run.label_noise, "status":
                         "FAILED" if error else "FINISHED", "error": error, "partial": run.partial,
                         "label_check": label_check(hist), "history": _jsonable(hist)})
            print(f"ok     {tag}: {len(hist.get('train_loss', []))} epochs  ({time.time() - t0:.0f}s)")
    args.out.mkdir(parents=True, exist_ok=True)
    for old in args.out.glob("*.json"):
        old.unlink()
    kept = 0
    for rec in _good_enough(recs):
        partial = rec.pop("partial")
        copies = [(rec["file"], rec["history"])]
        if partial:
            copies.append((f"{rec['file']}__{partial}", _partial(rec["history"], partial)))
        for name, hist in copies:
            out = {k: v for k, v in rec.items() if k != "file"} | {"history": hist}
            (args.out / f"{name}.json").write_text(json.dumps(out, separators=(",", ":")) + "\n")
            kept += 1
    print(f"kept {kept} curves from {len(recs)} runs, {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
