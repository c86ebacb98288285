"""Replay sweeps against the tabular surrogate through hpo's own searcher and scheduler objects.

Each (method, seed) builds the sweep file ``mnist1d_mlp.yaml`` would give with that method, validates it
(``hpo.loading.validate``) and asks ``hpo.search`` for the same searcher (``make_searcher``: Ray Tune's
OptunaSearch around the sampler ``hpo run`` builds) and scheduler (``make_scheduler``: ASHA / Hyperband /
FIFO) that ``hpo run`` hands the Tuner. Then, in place of Ray's controller and training, one trial at a
time: the searcher suggests a configuration, the surrogate gives its val_accuracy after each epoch, and
each epoch's result goes to the scheduler and the searcher in the order Ray's controller uses
(scheduler first; on STOP the searcher is not told that result, then both hear the trial complete).

Budget: B trial-epochs (``--budget-trials`` full trials x 20 epochs). Without early stopping a method
runs B / 20 trials; with ASHA / Hyperband it may start B / 2 trials and the curve is cut at B consumed
trial-epochs. Regret after b trial-epochs = (best val_accuracy the surrogate gives to any configuration
seen in any replay or in the table) - (best val_accuracy seen so far), every epoch counted.

Printed: median [25%, 75%] of regret over seeds at shares of B, and how much of B auto+asha needs for its
median regret to reach random search's final median regret.

Run:  nice -n 10 .venv/bin/python bench/tabular/replay.py [--seeds 30] [--budget-trials 40] [--jobs 2]
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
for path in (str(ROOT), str(HERE)):
    if path not in sys.path:
        sys.path.insert(0, path)

import table as tabular  # noqa: E402

METRIC = "val_accuracy"
SHARES = (0.125, 0.25, 1 / 3, 0.5, 0.75, 1.0)
# method -> (hpo method, sampler (None: the default, auto), early stopping)
METHODS: dict[str, tuple[str, str | None, str]] = {
    "random": ("random", None, "none"),
    "random+asha": ("random", None, "asha"),
    "grid": ("grid", None, "none"),
    "tpe": ("bayes", "tpe", "none"),
    "auto": ("bayes", None, "none"),
    "auto+asha": ("bayes", None, "asha"),
    "hyperband": ("random", None, "hyperband"),
    "auto+hyperband": ("bayes", None, "hyperband"),
    "gp": ("bayes", "gp", "none"),  # last: by far the slowest to replay (seconds a suggestion)
}
# The grid a person would write by hand for this space: 3 optimizers x 4 learning rates x 2 batch sizes x
# 2 widths = 48 points, the rest fixed at common values.
GRID: dict[str, Any] = {
    "optimizer": {"values": ["sgd", "adam", "adamw"]},
    "momentum": {"value": 0.9, "when": {"optimizer": "sgd"}},
    "lr": {"values": [1.0e-3, 3.0e-3, 1.0e-2, 1.0e-1]},
    "batch_size": {"values": [64, 128]},
    "weight_decay": 1.0e-4,
    "dropout": 0.1,
    "hidden": {"values": [128, 256]},
    "layers": 2,
    "scheduler": "cosine",
}


def sweep_config(method: str, seed: int, budget_trials: int, raw: dict[str, Any]) -> Any:
    """The validated sweep of ``method`` (a key of METHODS) and ``seed``; ``raw`` is the benchmark's file."""
    from hpo.loading import validate

    kind, sampler, stop = METHODS[method]
    early = {**raw["early_stop"], "type": stop} if stop != "none" else {"type": "none"}
    trials = budget_trials * (10 if stop != "none" else 1)  # early stopping: as many as fit, cut at B
    doc = {**raw, "name": f"replay_{method.replace('+', '_')}_{seed}", "method": kind, "seed": seed,
           "early_stop": early, "budget": {"trials": trials, "max_concurrent": 1}}
    if kind == "grid":
        doc["parameters"] = GRID
        doc["budget"] = {"max_concurrent": 1}
    if sampler == "gp":
        # hpo refuses gp on a conditional space (momentum exists for sgd only); Optuna's GP would
        # sample momentum at random, which is what runs here
        config = validate({**doc, "sampler": "tpe"}, source="replay")
        return config.model_copy(update={"sampler": "gp"})
    if sampler is not None:
        doc["sampler"] = sampler
    return validate(doc, source="replay")


Objective = Callable[[dict[str, Any], Callable[[float], bool]], None]


def surrogate_objective(surrogate: tabular.Surrogate) -> Objective:
    """Each epoch's value from the surrogate's curve, until ``on_epoch`` says stop."""

    def run(params: dict[str, Any], on_epoch: Callable[[float], bool]) -> None:
        for value in surrogate.curve(params):
            if not on_epoch(float(value)):
                return

    return run


class _Stop(Exception):
    """Raised from the report callback when the scheduler (or the budget) ends a real trial."""


def real_objective(epochs: int) -> Objective:
    """Real training (``--real``): ``trainers.loop.fit`` in this process on the table's split, one thread."""
    import torch
    from generate import TRAIN_SEED, split_data

    from trainers.loop import Diverged, fit

    torch.set_num_threads(1)
    data, fixed = split_data(), dict(tabular.sweep_config().trainer.options)

    def run(params: dict[str, Any], on_epoch: Callable[[float], bool]) -> None:
        def report(metrics: dict[str, float], checkpoint: Any = None) -> None:
            if not on_epoch(float(metrics[METRIC])):
                raise _Stop

        try:
            fit({**fixed, **params, "epochs": epochs, "seed": TRAIN_SEED}, report, data=data,
                metric=METRIC, goal="maximize")
        except (_Stop, Diverged):
            return

    return run


def replay(config: Any, objective: Objective, budget: int) -> tuple[list[float], int]:
    """Best val_accuracy so far after each consumed trial-epoch (length <= budget), and the trials started.

    ``objective(params, on_epoch)`` trains (or looks up) one configuration, calling ``on_epoch(value)``
    after every epoch and stopping when it returns False.
    """
    from ray.tune.schedulers import TrialScheduler

    from hpo import rules
    from hpo.search import make_scheduler, make_searcher
    from hpo.trial_book import TrialBook
    from hpo.trial_keys import BEST_KEY

    np.random.seed(config.seed)  # Ray's Hyperband draws each trial's bracket from numpy's global state
    trials = rules.trials_planned(config)
    book = TrialBook()
    searcher = make_searcher(config, trials, book)
    scheduler = make_scheduler(config, book, config.max_epochs)
    names = set(tabular.sweep_config().parameters)
    state: dict[str, Any] = {"best": -math.inf, "points": []}
    number = 0
    for number in range(trials):
        trial_id = f"t{number:05d}"
        suggested = searcher.suggest(trial_id)
        if suggested is None:
            break
        trial = SimpleNamespace(trial_id=trial_id, config=suggested)
        scheduler.on_trial_add(None, trial)
        state.update(running=-math.inf, result={}, epoch=0)

        def on_epoch(value: float, trial: Any = trial, trial_id: str = trial_id) -> bool:
            state["epoch"] += 1
            state["running"] = max(state["running"], value)
            state["best"] = max(state["best"], value)
            state["points"].append(state["best"])
            state["result"] = {"training_iteration": state["epoch"], METRIC: value, BEST_KEY: state["running"]}
            decision = scheduler.on_trial_result(None, trial, state["result"])
            if len(state["points"]) >= budget or decision == TrialScheduler.STOP:
                return False
            searcher.on_trial_result(trial_id, state["result"])
            return True

        # the trial's configuration as the trainer gets it: sampled and fixed values of the space
        objective({k: v for k, v in suggested.items() if k in names}, on_epoch)
        scheduler.on_trial_complete(None, trial, state["result"])
        searcher.on_trial_complete(trial_id, result=state["result"])
        if len(state["points"]) >= budget:
            break
    points: list[float] = state["points"]
    return points, number + 1 if points else 0


_OBJECTIVE: Objective | None = None
_RAW: dict[str, Any] = {}


def _init(trees: int, real: bool, rows: int | None) -> None:
    """A worker's objective: the surrogate fitted on the whole table, or real training (``--real``)."""
    import logging
    import warnings

    import torch
    import yaml

    global _OBJECTIVE, _RAW
    warnings.filterwarnings("ignore")
    torch.set_num_threads(1)  # Optuna's GP runs on torch: one thread per worker, the jobs are the parallelism
    logging.getLogger("ray").setLevel(logging.ERROR)
    _RAW = yaml.safe_load(tabular.SWEEP.read_text(encoding="utf-8"))
    config = tabular.sweep_config()
    _OBJECTIVE = (real_objective(config.max_epochs) if real
                  else surrogate_objective(tabular.Surrogate(tabular.load(rows=rows), config, trees=trees)))


def _job(args: tuple[str, int, int]) -> tuple[str, int, list[float], float]:
    method, seed, budget_trials = args
    if _OBJECTIVE is None:
        raise RuntimeError("worker not initialised")
    config = sweep_config(method, seed, budget_trials, _RAW)
    started = time.process_time()
    points, _ = replay(config, _OBJECTIVE, budget_trials * config.max_epochs)
    return method, seed, points, time.process_time() - started


def regret_at(points: list[float], spent: int, reference: float) -> float:
    """Regret once ``spent`` trial-epochs are consumed (a sweep that used less keeps its last value)."""
    if not points:
        return reference
    return reference - points[min(spent, len(points)) - 1]


def quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    return float(q2), float(q1), float(q3)


def report(runs: dict[str, dict[int, list[float]]], reference: float, budget: int, cpu: dict[str, float],
           header: list[str]) -> str:
    lines = [*header, "", f"regret (reference {reference:.4f} - best val_accuracy so far): median [25%, 75%] over "
             f"seeds, at a share of B = {budget} trial-epochs"]
    cols = ["method", "seeds", *(f"{s:.0%} ({round(s * budget)})" for s in SHARES), "CPU s/seed"]
    rows = []
    for method, by_seed in runs.items():
        if not by_seed:
            continue
        cells = [str(len(by_seed))]
        for share in SHARES:
            med, q1, q3 = quartiles([regret_at(p, round(share * budget), reference) for p in by_seed.values()])
            cells.append(f"{med:.4f} [{q1:.4f}, {q3:.4f}]")
        rows.append([method, *cells, f"{cpu[method] / len(by_seed):.1f}"])
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(cols)]
    lines.append("  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    lines += ["", *claim_lines(runs, reference, budget)]
    return "\n".join(lines)


def claim_lines(runs: dict[str, dict[int, list[float]]], reference: float, budget: int) -> list[str]:
    """How much of B each method's median regret needs to reach random search's final median regret."""
    if "random" not in runs:
        return []
    target = quartiles([regret_at(p, budget, reference) for p in runs["random"].values()])[0]
    lines = [f"random search's median regret at B: {target:.4f}; trial-epochs each method's median regret "
             "needs to reach it:"]
    for method, by_seed in runs.items():
        if not by_seed:
            continue
        reached = next((b for b in range(1, budget + 1)
                        if quartiles([regret_at(p, b, reference) for p in by_seed.values()])[0] <= target), None)
        paired = [regret_at(by_seed[s], budget // 3, reference) <= regret_at(runs["random"][s], budget, reference)
                  for s in by_seed if s in runs["random"]]
        where = f"{reached} = {reached / budget:.2f} of B" if reached is not None else "not within B"
        lines.append(f"  {method:15s} {where}; seeds whose regret at B/3 <= random's at B (same seed): "
                     f"{sum(paired)}/{len(paired)}")
    return lines


def _read_cache(path: Path | None, runs: dict[str, dict[int, list[float]]],
                cpu: dict[str, float]) -> set[tuple[str, int]]:
    """Runs an earlier, interrupted invocation appended to ``path`` (one JSON line each): kept, not re-run."""
    done: set[tuple[str, int]] = set()
    if path is None or not path.is_file():
        return done
    for line in path.read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["method"] in runs:
            runs[row["method"]][row["seed"]] = row["points"]
            cpu[row["method"]] += row["cpu_s"]
            done.add((row["method"], row["seed"]))
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--budget-trials", type=int, default=40, help="B = this many full trials' epochs")
    parser.add_argument("--methods", nargs="+", choices=list(METHODS), default=list(METHODS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--trees", type=int, default=64, help="trees of the surrogate's random forest")
    parser.add_argument("--real", action="store_true",
                        help="train each trial for real (trainers.loop.fit, the table's split), not the surrogate")
    parser.add_argument("--cache", type=Path, help="append each run here; a re-run with the same file skips them")
    parser.add_argument("--report-only", action="store_true", help="report what --cache holds; run nothing")
    parser.add_argument("--rows", type=int, help="use the design's first ROWS configurations of the table only")
    parser.add_argument("--out", type=Path, help="also write the report to this file")
    args = parser.parse_args()

    started = time.monotonic()
    table = tabular.load(rows=args.rows)
    config = tabular.sweep_config()
    error = tabular.held_out_error(table, config)
    runs: dict[str, dict[int, list[float]]] = {m: {} for m in args.methods}
    cpu = dict.fromkeys(args.methods, 0.0)
    done = _read_cache(args.cache, runs, cpu)
    jobs = [(m, s, args.budget_trials) for m in args.methods for s in range(args.seeds)
            if (m, s) not in done and not args.report_only]
    with ProcessPoolExecutor(args.jobs, initializer=_init, initargs=(args.trees, args.real, args.rows)) as pool:
        for method, seed, points, seconds in pool.map(_job, jobs):
            runs[method][seed] = points
            cpu[method] += seconds
            if args.cache is not None:
                with args.cache.open("a", encoding="utf-8") as cache:
                    cache.write(json.dumps({"method": method, "seed": seed, "points": points, "cpu_s": seconds}) + "\n")
            print(f"[{(time.monotonic() - started) / 60:5.1f} min] {method} seed {seed}: {len(points)} trial-epochs, "
                  f"best {points[-1] if points else float('nan'):.4f}", file=sys.stderr, flush=True)
    # the best value known: the table's best real value (--real) or the surrogate's best answer on the table
    known = (table.val_accuracy.max() if args.real else
             tabular.Surrogate(table, config, trees=args.trees).curves(table.params).max())
    reference = max(float(known), *(p[-1] for r in runs.values() for p in r.values()))
    budget = args.budget_trials * config.max_epochs
    rows = f"the Sobol design's first {args.rows}" if args.rows else "the whole table"
    header = [
        f"{'REAL TRAINING (--real), not the surrogate; ' if args.real else ''}tabular replay: MNIST-1D MLP, "
        f"{len(table)} real configurations ({rows}) x "
        f"{config.max_epochs} epochs "
        f"({table.status.count('diverged')} diverged), validation split = 800 sequences held out of the training split",
        f"surrogate: random forest ({args.trees} trees) on the val_accuracy curves; 5-fold held-out error: best "
        f"val_accuracy MAE {error['mae_best']:.4f} (spread of real bests {error['spread']:.4f}), per-epoch MAE "
        f"{error['mae_curve']:.4f}, Spearman of bests {error['spearman_best']:.3f}",
        "seeds 0.. per method (column seeds); one trial at a time; ASHA/Hyperband grace 1, reduction factor 3; "
        f"total wall {(time.monotonic() - started) / 60:.1f} min; command: nice -n 10 .venv/bin/python "
        f"{' '.join(['bench/tabular/replay.py', *sys.argv[1:]])}",
    ]
    text = report(runs, reference, budget, cpu, header)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
