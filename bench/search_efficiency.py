"""Search efficiency: random, grid and bayes (default sampler: auto), each with and without ASHA, at an equal budget.

One fixed, cheap task (scikit-learn digits, MLP with 2 hidden layers of 32, half of the training part,
``--epochs`` epochs per full trial) and a space where the hyperparameters matter (optimizer sgd/adam
with conditional momentum, log lr 1e-4..1, batch size, dropout, weight decay). Every method gets the
same budget of B trial-epochs (``--budget``):

- random, bayes: B / epochs full trials;
- grid: a hand-made grid of 3 lr x 2 optimizers x 2 batch sizes (12 points = 96 trial-epochs at 8 epochs;
  the budget row says so when B differs);
- random+ASHA, bayes+ASHA: as many trials as fit (ASHA, grace 1 epoch, reduction factor 3), the curve cut
  at B consumed trial-epochs;
- grid+ASHA: a finer grid (9 lr x 2 optimizers x 3 batch sizes, 54 points, visited in the sampler's seeded
  random order), cut at B.

Each sweep runs through the real runner (``hpo.runner.run_sweep``, in this process), one trial at a time
(``max_concurrent: 1``, so trials run in proposal order and the epochs they consume are counted in that
order), with a fresh HPO_HOME in a tmp folder. The best-so-far curve counts every epoch a trial ran
(stopped and failed trials included) and the best val_accuracy seen at any epoch so far.

Printed: per method, mean +- std over seeds of the best val_accuracy at 25/50/75/100% of B, and the
fraction of B that bayes+ASHA needs to reach random search's final best (per seed; "not reached" is
counted as such, not dropped).

Run:  nice -n 10 .venv/bin/python bench/search_efficiency.py [--seeds 0 1 2] [--budget 96] [--quick]
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

METRIC = "val_accuracy"
METHODS = ("random", "random+asha", "grid", "grid+asha", "bayes", "bayes+asha")
FRACTIONS = (0.25, 0.5, 0.75, 1.0)
ASHA = {"type": "asha", "grace_epochs": 1, "reduction_factor": 3}

SPACE: dict[str, Any] = {
    "optimizer": {"values": ["sgd", "adam"]},
    "momentum": {"distribution": "uniform", "min": 0.0, "max": 0.99, "when": {"optimizer": "sgd"}},
    "lr": {"distribution": "log_uniform", "min": 1.0e-4, "max": 1.0},
    "batch_size": {"values": [16, 32, 64, 128]},
    "dropout": {"distribution": "uniform", "min": 0.0, "max": 0.5},
    "weight_decay": {"distribution": "log_uniform", "min": 1.0e-6, "max": 1.0e-1},
}
# The grid a person would write by hand: three decades of lr, both optimizers, two batch sizes.
GRID: dict[str, Any] = {
    "optimizer": {"values": ["sgd", "adam"]},
    "momentum": {"value": 0.9, "when": {"optimizer": "sgd"}},
    "lr": {"values": [1.0e-3, 1.0e-2, 1.0e-1]},
    "batch_size": {"values": [32, 128]},
    "dropout": 0.1,
    "weight_decay": 1.0e-5,
}
# Finer grid for grid+ASHA, which can afford more points in the same budget.
FINE_GRID: dict[str, Any] = {
    **GRID,
    "lr": {"values": [1.0e-4, 3.0e-4, 1.0e-3, 3.0e-3, 1.0e-2, 3.0e-2, 1.0e-1, 3.0e-1, 1.0]},
    "batch_size": {"values": [32, 64, 128]},
}


def sweep_dict(method: str, seed: int, budget: int, epochs: int, quick: bool = False) -> dict[str, Any]:
    """The sweep file (as a dict) for one method and seed (``quick``: grid+ASHA on the coarse grid)."""
    search, asha = method.split("+")[0], method.endswith("+asha")
    if search == "grid":
        parameters = FINE_GRID if asha and not quick else GRID
        trials = 0  # grid runs every point; budget.trials must be left out
    elif asha:
        # ASHA (grace 1, factor 3) averages ~2 epochs a trial at 8 epochs; 0.8 B trials overshoot B, then the cut.
        parameters, trials = SPACE, math.ceil(0.8 * budget)
    else:
        parameters, trials = SPACE, max(1, budget // epochs)
    return {
        "name": f"eff_{search}{'_asha' if asha else ''}_s{seed}",
        "method": search,
        "metric": {"name": METRIC, "goal": "maximize"},
        "budget": {**({"trials": trials} if trials else {}), "max_concurrent": 1},
        "early_stop": ASHA if asha else {"type": "none"},
        "seed": seed,
        "trainer": {"task": "digits", "epochs": epochs,
                    "options": {"model": "mlp", "hidden": 32, "layers": 2, "train_fraction": 0.5}},
        "resources": {"cpu": 1},
        "parameters": parameters,
    }


def curve(records: list[Any]) -> list[tuple[int, float]]:
    """(trial-epochs consumed, best val_accuracy so far) after every epoch, trials in the order they ran."""
    points: list[tuple[int, float]] = []
    consumed, best = 0, -math.inf
    for record in sorted(records, key=lambda r: r.number):
        for value in record.history.get(METRIC, []) or [None] * record.epochs:
            consumed += 1
            if value is not None and math.isfinite(value):
                best = max(best, value)
            points.append((consumed, best))
    return points


def best_at(points: list[tuple[int, float]], consumed: int) -> float:
    """Best value once ``consumed`` trial-epochs have been spent (the last point when the sweep used less)."""
    best = -math.inf
    for spent, value in points:
        if spent > consumed:
            break
        best = value
    return best


def spent_to_reach(points: list[tuple[int, float]], target: float, budget: int) -> int | None:
    """Trial-epochs spent until the best so far first reaches ``target``, within ``budget``; None if never."""
    for spent, value in points:
        if spent > budget:
            return None
        if value >= target:
            return spent
    return None


def run_one(method: str, seed: int, budget: int, epochs: int, scratch: Path, quick: bool = False) -> dict[str, Any]:
    """One sweep through the real runner, with its own HPO_HOME; returns its curve and counts."""
    import mlflow  # noqa: F401 - configures its logger on import; quiet it afterwards
    import yaml

    from hpo.loading import validate
    from hpo.runner import run_sweep

    logging.getLogger("mlflow").setLevel(logging.WARNING)  # "Creating initial MLflow database tables" per sweep
    raw = sweep_dict(method, seed, budget, epochs, quick)
    home = scratch / raw["name"]
    os.environ["HPO_HOME"] = str(home / ".hpo")
    config = validate(raw, source=f"{raw['name']}.yaml")
    started = time.monotonic()
    with open(os.devnull, "w", encoding="utf-8") as quiet:
        result = run_sweep(config, yaml.safe_dump(raw, sort_keys=False), progress_stream=quiet)
    wall = time.monotonic() - started
    shutil.rmtree(home, ignore_errors=True)
    points = curve(result.trials)
    used = sorted(result.trials, key=lambda r: r.number)
    within, spent = 0, 0
    for record in used:
        if spent >= budget:
            break
        within += 1
        spent += len(record.history.get(METRIC, [])) or record.epochs
    return {
        "method": method, "seed": seed, "points": points, "wall_s": wall,
        "consumed": points[-1][0] if points else 0, "trials_within": within, "trials_run": len(used),
        "failed": sum(r.status == "FAILED" for r in used),
    }


def fmt(values: list[float]) -> str:
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "-"
    mean = statistics.fmean(finite)
    std = statistics.stdev(finite) if len(finite) > 1 else 0.0
    return f"{mean:.4f} ± {std:.4f}"


def report(runs: list[dict[str, Any]], seeds: list[int], budget: int, epochs: int, wall_s: float) -> str:
    lines = [
        f"search efficiency: digits MLP (2 x 32 hidden, train_fraction 0.5), {epochs} epochs a full trial, "
        f"metric {METRIC} (hold-out 20%, 360 images)",
        f"budget B = {budget} trial-epochs per sweep; seeds {seeds}; one trial at a time; ASHA grace 1, "
        f"reduction factor 3",
        f"machine: {os.cpu_count()} cores, CPU, Python {platform.python_version()}; total wall {wall_s / 60:.1f} min",
        "",
        f"best {METRIC} so far, mean ± std over {len(seeds)} seeds, at a share of B consumed",
    ]
    header = ["method", *(f"{int(f * 100)}% ({round(f * budget)})" for f in FRACTIONS), "trials in B",
              "epochs used", "wall s"]
    rows = []
    for method in METHODS:
        mine = [r for r in runs if r["method"] == method]
        if not mine:
            continue
        cells = [fmt([best_at(r["points"], round(f * budget)) for r in mine]) for f in FRACTIONS]
        trials = statistics.fmean(r["trials_within"] for r in mine)
        used = statistics.fmean(min(r["consumed"], budget) for r in mine)
        wall = statistics.fmean(r["wall_s"] for r in mine)
        rows.append([method, *cells, f"{trials:.1f}", f"{used:.0f}", f"{wall:.0f}"])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines.append("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    lines.append("  ".join("-" * w for w in widths))
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in rows]

    lines += ["", "share of B that bayes+asha needs to reach random search's final best (at B), per seed:"]
    shares: list[float] = []
    for seed in seeds:
        rand = next((r for r in runs if r["method"] == "random" and r["seed"] == seed), None)
        bayes = next((r for r in runs if r["method"] == "bayes+asha" and r["seed"] == seed), None)
        if rand is None or bayes is None:
            continue
        target = best_at(rand["points"], budget)
        spent = spent_to_reach(bayes["points"], target, budget)
        if spent is None:
            final = best_at(bayes["points"], budget)
            lines.append(f"  seed {seed}: random's best {target:.4f}; bayes+asha not reached within B "
                         f"(its best at B {final:.4f})")
        else:
            shares.append(spent / budget)
            lines.append(f"  seed {seed}: random's best {target:.4f}; bayes+asha reached it after {spent} "
                         f"trial-epochs = {spent / budget:.2f} of B")
    reached = len(shares)
    total = len([s for s in seeds if any(r["seed"] == s and r["method"] == "bayes+asha" for r in runs)])
    if reached:
        mean = statistics.fmean(shares)
        lines.append(f"  mean over the {reached} of {total} seeds where it was reached: {mean:.2f} of B"
                     + ("" if reached == total else
                        f"; counting a miss as 1.00 (a lower bound): {(sum(shares) + total - reached) / total:.2f}"))
    else:
        lines.append(f"  not reached within B in any of {total} seeds")
    if epochs * 12 != budget:
        lines.append(f"\nnote: the grid has 12 points = {12 * epochs} trial-epochs, not B = {budget}; cut at B")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--budget", type=int, default=96, help="trial-epochs per sweep (default 96 = 12 x 8)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs of a full trial")
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--quick", action="store_true",
                        help="smoke run (< 2 min): one seed, budget 8, 2 epochs a trial, the coarse grid for grid+asha")
    parser.add_argument("--out", type=Path, help="also write the table to this file")
    args = parser.parse_args()
    if args.quick:
        args.seeds, args.budget, args.epochs = args.seeds[:1], 8, 2

    for key in ("MLFLOW_TRACKING_URI", "RAY_ADDRESS"):
        os.environ.pop(key, None)
    scratch = Path(tempfile.mkdtemp(prefix="hpo_search_eff_"))
    started = time.monotonic()
    runs = []
    try:
        for seed in args.seeds:
            for method in args.methods:
                run = run_one(method, seed, args.budget, args.epochs, scratch, args.quick)
                runs.append(run)
                print(f"[{(time.monotonic() - started) / 60:5.1f} min] seed {seed} {method:11s}: "
                      f"{run['trials_run']} trials, {run['consumed']} trial-epochs, best at B "
                      f"{best_at(run['points'], args.budget):.4f}, {run['wall_s']:.0f} s", file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    text = report(runs, args.seeds, args.budget, args.epochs, time.monotonic() - started)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
