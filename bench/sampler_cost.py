"""Time per suggestion of each bayes sampler as the trials grow (100, 300, 1,000 finished trials).

For each sampler and history size n: a study is given n finished trials (random configurations of a
numeric 6-parameter space scored by a smooth test function, added with ``study.add_trials``, so the
history costs nothing to make), then the sampler built as ``hpo run`` builds it (``hpo.samplers.build``)
proposes ``--asks`` more configurations, each told its score; the median seconds per ask+tell is printed.
``auto`` is what ``sampler: auto`` picks for a numeric sweep of n trials (GP up to
``sampler_choice.GP_MAX_TRIALS``, then GP handing over to CMA-ES: past that point the hand-over has
happened, so its cost is CMA-ES's).

Run:  nice -n 10 .venv/bin/python bench/sampler_cost.py [--sizes 100 300 1000] [--asks 3]
"""

from __future__ import annotations

import argparse
import math
import platform
import statistics
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import optuna  # noqa: E402

from hpo import samplers  # noqa: E402
from hpo.sampler_choice import SamplerChoice, choose  # noqa: E402

DIMS = 6
SAMPLERS = ("tpe", "gp", "cmaes", "auto")


def _score(params: dict[str, float]) -> float:
    """A smooth multimodal test function on [0, 1]^6 (Hartmann-like bumps)."""
    x = np.array([params[f"x{i}"] for i in range(DIMS)])
    return float(-np.sum((x - 0.3) ** 2) + 0.1 * math.sin(10 * x[0]) * math.cos(7 * x[1]))


def _history(n: int, seed: int) -> list[optuna.trial.FrozenTrial]:
    rng = np.random.default_rng(seed)
    dist = {f"x{i}": optuna.distributions.FloatDistribution(0.0, 1.0) for i in range(DIMS)}
    trials = []
    for _ in range(n):
        params = {name: float(rng.uniform()) for name in dist}
        trials.append(optuna.trial.create_trial(params=params, distributions=dist, value=_score(params)))
    return trials


def _sampler(name: str, n: int) -> optuna.samplers.BaseSampler:
    if name == "auto":
        from hpo.loading import validate

        # what auto picks for a sweep of 6 numeric ranges of the built-in trainer and n + 10 trials
        ranges = {key: {"distribution": "uniform", "min": 0.1, "max": 0.5}
                  for key in ("lr", "weight_decay", "dropout", "l2", "label_smoothing", "input_noise")}
        config = validate({"name": "cost", "method": "bayes", "trainer": {"task": "digits"},
                           "budget": {"trials": n + 10}, "parameters": ranges})
        choice = choose(config)
    else:
        choice = SamplerChoice(name, "", 10, requested=name)  # type: ignore[arg-type]
    return samplers.build(choice, seed=0, trials=n + 10)


def seconds_per_ask(name: str, n: int, asks: int) -> float:
    study = optuna.create_study(direction="maximize", sampler=_sampler(name, n))
    study.add_trials(_history(n, seed=n))
    times = []
    for _ in range(asks):
        started = time.process_time()
        trial = study.ask()
        params = {f"x{i}": trial.suggest_float(f"x{i}", 0.0, 1.0) for i in range(DIMS)}
        study.tell(trial, _score(params))
        times.append(time.process_time() - started)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100, 300, 1000])
    parser.add_argument("--asks", type=int, default=3)
    parser.add_argument("--samplers", nargs="+", choices=SAMPLERS, default=list(SAMPLERS))
    args = parser.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.filterwarnings("ignore")
    print(f"CPU seconds per suggestion (process time, median of {args.asks} ask+tell), numeric {DIMS}-parameter space, "
          f"n finished trials before; {platform.processor() or platform.machine()}, Optuna {optuna.__version__}")
    print("sampler  " + "  ".join(f"n={n:<6d}" for n in args.sizes))
    for name in args.samplers:
        cells = []
        for n in args.sizes:
            cells.append(f"{seconds_per_ask(name, n, args.asks):8.3f}")
        print(f"{name:7s}  " + "  ".join(cells), flush=True)


if __name__ == "__main__":
    main()
