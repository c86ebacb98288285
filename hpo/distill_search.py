"""The distillation's own small sweep: temperature and mixing weight, sampled by the sweep machinery.

The space is a real ``SweepConfig`` (the same ``Range`` models, define-by-run space and seeded sampler
as ``hpo run``: ``hpo.space`` and ``hpo.search.make_sampler``), driven ask-and-tell in this process
rather than through Ray Tune: the teacher is already in memory here, each student trains for seconds
on one core, and a Tune run would start a Ray session, ship the teacher to workers and open a sweep
of its own (parent run, lease, journal) for a handful of tiny trials. The first trial is the
``temperature`` and ``alpha`` given in the settings, so the sweep can only match or beat them.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

from hpo.config import SweepConfig

# as a sweep file states them; Hinton et al. use T in 1..20, past ~10 a 10-class softmax is nearly flat
TEMPERATURE = {"distribution": "log_uniform", "min": 1.0, "max": 10.0}
ALPHA = {"distribution": "uniform", "min": 0.1, "max": 0.95}


def search_config(task: str, trials: int, seed: int, goal: Literal["maximize", "minimize"]) -> SweepConfig:
    """The distillation sweep as a sweep file would state it (what ``make_sampler`` reads)."""
    return SweepConfig.model_validate({
        "name": "distill", "method": "bayes", "seed": seed, "trainer": {"task": task},
        "metric": {"name": "val_metric", "goal": goal}, "budget": {"trials": trials},
        "parameters": {"temperature": TEMPERATURE, "alpha": ALPHA},
    })


class DistillSearch:
    """Ask-and-tell over ``temperature`` and ``alpha`` with the sweep's sampler (TPE, seeded); the
    ``trainers.compression.students.StudentSearch`` the compression stage drives."""

    def __init__(self, task: str, trials: int, seed: int, goal: Literal["maximize", "minimize"],
                 first: dict[str, float]) -> None:
        import optuna

        from hpo.search import make_sampler
        from hpo.space import define_by_run

        config = search_config(task, trials, seed, goal)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # TPE's group=True
            sampler = make_sampler(config, trials)
        self.study = optuna.create_study(direction=goal, sampler=sampler)
        self.study.enqueue_trial(dict(first))
        self.space = define_by_run(config)
        self._trial: Any = None

    def ask(self) -> dict[str, float]:
        self._trial = self.study.ask()
        self.space(self._trial)
        return {k: float(v) for k, v in self._trial.params.items()}

    def tell(self, value: float) -> None:
        self.study.tell(self._trial, value)
