"""Labelled runs for the findings from inside training (``hpo.diagnosis._internals``), and how often each fires.

Each run trains the built-in loop (``trainers.loop.fit``, signals on) on sklearn digits or MNIST-1D in a
configuration *built* to show one problem, over several seeds:

    bad_init        6-layer ReLU MLP, weights N(0, 0.001): the signal dies on the way in  -> poor_initialization
    sigmoid_stack   6-layer sigmoid MLP, weights N(0, 2): units pinned at 0 or 1        -> saturated_units
    lr_too_low      SGD at lr 1e-6                                                       -> update_ratio_too_small
    lr_too_high     SGD at lr 20 (momentum 0.9)                                          -> update_ratio_too_large
    dead_relu       ReLU MLP, Adam at lr 0.05, no normalization: units die in training   -> dead_units
    healthy         Adam 1e-3 MLP, SGD 0.05 MLP, tanh and sigmoid MLPs (xavier), CNN, GRU -> none of the above

A run counts as *found* when its expected finding is among the diagnosis's findings (the one path,
``hpo.diagnosis.diagnose_trial``, fed the stored per-epoch series as ``hpo diagnose`` would be); a healthy run
counts as a *false alarm* for every internal finding it gets. Each run's series, params and expected finding
are written to ``tests/data/diagnosis_signals/<task>/<scenario>-s<seed>.json`` (``hpo diagnose --history``
reads them).

Usage:  nice -n 10 python bench/diagnosis_signals.py [--seeds 4] [--epochs 8] [--out tests/data/diagnosis_signals]
"""

from __future__ import annotations

import argparse
import json
import math
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import torch

from hpo.diagnosis import diagnose_trial, task_classes
from hpo.diagnosis._internals import FINDINGS
from trainers.loop import Diverged, fit
from trainers.tasks import load_task

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_OUT = ROOT / "tests" / "data" / "diagnosis_signals"
DEEP = {"model": "mlp", "layers": 6, "hidden": 64}
SCENARIOS: dict[str, tuple[str | None, list[dict[str, Any]]]] = {
    "bad_init": ("poor_initialization", [{**DEEP, "init": "normal", "init_std": 0.001}]),
    "sigmoid_stack": ("saturated_units", [{**DEEP, "activation": "sigmoid", "init": "normal", "init_std": 2.0}]),
    "lr_too_low": ("update_ratio_too_small", [{"optimizer": "sgd", "lr": 1e-6}]),
    "lr_too_high": ("update_ratio_too_large", [{"optimizer": "sgd", "lr": 20.0, "momentum": 0.9}]),
    "dead_relu": ("dead_units", [{"optimizer": "adam", "lr": 0.05, "layers": 3}]),
    "healthy": (None, [
        {"optimizer": "adam", "lr": 1e-3},
        {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9},
        {"activation": "tanh", "init": "xavier_normal", "lr": 1e-3},
        {"activation": "sigmoid", "init": "xavier_normal", "lr": 3e-3},
        {"model": "cnn", "hidden": 16, "lr": 3e-3},
        {"model": "gru", "hidden": 32, "lr": 3e-3},
    ]),
}
TASKS = ("digits", "mnist1d")


def run_one(task: str, config: dict[str, Any], data: Any) -> tuple[dict[str, list[float | None]], str | None]:
    """Train; the per-epoch series as the store holds them, and the error if the loss diverged."""
    history: dict[str, list[float | None]] = defaultdict(list)

    def report(metrics: dict[str, float], checkpoint: Any = None) -> None:
        for k, v in metrics.items():
            history[k].append(v if math.isfinite(v) else None)

    try:
        fit(config, report, data=data)
    except Diverged as e:
        return dict(history), f"Diverged: {e}"
    return dict(history), None


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--seeds", type=int, default=4)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument("--no-write", action="store_true", help="only report the rates")
    args = ap.parse_args()
    torch.set_num_threads(1)
    started = time.perf_counter()
    found: Counter[str] = Counter()
    runs: Counter[str] = Counter()
    alarms: Counter[str] = Counter()
    others: dict[str, Counter[str]] = defaultdict(Counter)
    silent: Counter[str] = Counter()  # diverged in the first epoch: no report, so no signals reached the store
    for task in TASKS:
        data = load_task(task, {})
        for scenario, (expected, configs) in SCENARIOS.items():
            for i, base in enumerate(configs):
                if task == "digits" and base.get("model") == "gru":
                    continue  # tabular inputs: no sequence for a GRU
                for seed in range(args.seeds):
                    config = {"epochs": args.epochs, "seed": seed, "batch_size": 64, **base}
                    history, error = run_one(task, config, data)
                    result = diagnose_trial(history, status="FAILED" if error else "FINISHED", error=error,
                                            params=config, n_classes=task_classes(task))
                    findings = [] if result is None else [f for f in result.findings if f in FINDINGS]
                    runs[scenario] += 1
                    silent[scenario] += not history
                    if expected is not None:
                        found[scenario] += expected in findings
                        others[scenario].update(f for f in findings if f != expected)
                    else:
                        alarms.update(findings)
                    print(f"{task:8} {scenario:13} {i} s{seed}: {', '.join(findings) or '-'}"
                          + (" (diverged)" if error else ""), flush=True)
                    if not args.no_write:
                        _write(args.out / task / f"{scenario}{i if len(configs) > 1 else ''}-s{seed}.json",
                               history, config, expected, task)
    _print_table(found, runs, alarms, others, silent, time.perf_counter() - started)


def _write(path: Path, history: dict[str, list[float | None]], config: dict[str, Any], expected: str | None,
           task: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    rounded = {k: [None if v is None else float(f"{v:.5g}") for v in vals] for k, vals in history.items()
               if k in ("train_loss", "val_loss", "train_accuracy", "val_accuracy", "lr") or k.startswith("signals/")}
    path.write_text(json.dumps({"history": rounded, "params": config, "task": task, "expected_finding": expected},
                               indent=1) + "\n")


def _print_table(found: Counter[str], runs: Counter[str], alarms: Counter[str], others: dict[str, Counter[str]],
                 silent: Counter[str], seconds: float) -> None:
    print("\n| scenario | expected finding | found / runs | also found (runs) | no report before diverging |")
    print("|---|---|---|---|---|")
    for scenario, (expected, _) in SCENARIOS.items():
        if expected is not None:
            also = ", ".join(f"`{f}` {n}" for f, n in others[scenario].most_common()) or "-"
            print(f"| {scenario} | `{expected}` | {found[scenario]} / {runs[scenario]} | {also} | {silent[scenario]} |")
    healthy = runs["healthy"]
    print(f"\nhealthy controls: {healthy} runs; false alarms: "
          + (", ".join(f"`{f}` {n}/{healthy}" for f, n in alarms.most_common()) or "none"))
    print(f"({seconds:.0f} s)")


if __name__ == "__main__":
    main()
