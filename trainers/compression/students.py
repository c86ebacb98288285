"""Distillation students: one with the given temperature and mixing weight, or the best of a small sweep.

The sweep's sampling is not decided here: a ``StudentSearch`` (``hpo.distill_search`` builds one on the
sweep machinery's own space and sampler) proposes settings and is told each student's validation
metric. Every student starts from the same initial weights (seeded), so trials differ by their
settings only; the best on the winner's validation metric becomes the ``distill`` variant.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import nn

from trainers.compression import retrain
from trainers.compression.measure import evaluate
from trainers.compression.settings import CompressSettings
from trainers.models import build_model


class StudentSearch(Protocol):
    """Proposes distillation settings one trial at a time and learns from each trial's value."""

    def ask(self) -> dict[str, float]:
        """The next trial's settings: ``temperature`` and ``alpha``."""
        ...

    def tell(self, value: float) -> None:
        """The validation metric of the student trained with the settings ``ask`` gave last."""
        ...


@dataclass
class StudentTrial:
    """One student of the distillation sweep: its settings and validation metric."""

    number: int
    temperature: float
    alpha: float
    metric: float
    selected: bool = False

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "temperature": self.temperature, "alpha": self.alpha, "metric": self.metric,
                "selected": self.selected}


@dataclass
class Distilled:
    """The chosen student, its config (``hidden``/``layers`` reduced), its settings and the sweep's trials."""

    student: nn.Module
    config: dict[str, Any]
    settings: dict[str, Any]
    trials: list[StudentTrial] = field(default_factory=list)


def student_config(config: dict[str, Any], settings: CompressSettings) -> dict[str, Any]:
    """The winner's config with the student's width (``student_width`` x ``hidden``) and depth."""
    hidden, layers = int(config["hidden"]), int(config["layers"])
    return {**config, "hidden": max(1, int(round(hidden * settings.student_width))),
            "layers": settings.student_layers or max(1, layers - 1)}


def distill_student(teacher: nn.Module, winner_config: dict[str, Any], data: Any, metric: str, goal: str,
                    settings: CompressSettings, search: StudentSearch | None = None) -> Distilled:
    """Train one student (``settings.distill_trials`` 0) or the sweep's students and keep the best.

    Raises:
        ValueError: ``distill_trials`` > 0 without a ``search`` to propose the settings.
    """
    config = student_config(winner_config, settings)
    epochs = settings.distill_epochs or int(winner_config["epochs"])

    def train(temperature: float, alpha: float) -> nn.Module:
        torch.manual_seed(int(winner_config.get("seed", 0)))  # the same initial student for every trial
        student = build_model(str(config["model"]), data.input_shape, data.n_outputs, config)
        return retrain.distill(teacher, student, winner_config, data, epochs=epochs, temperature=temperature,
                               alpha=alpha, metric=metric, goal=goal)

    chosen = {"temperature": settings.temperature, "alpha": settings.alpha}
    base = {"epochs": epochs, "hidden": config["hidden"], "layers": config["layers"]}
    if settings.distill_trials == 0:
        return Distilled(train(**chosen), config, {**chosen, **base})
    if search is None:
        raise ValueError("distill_trials > 0 needs a StudentSearch to propose the settings (hpo.distill_search)")
    sign = 1.0 if goal == "maximize" else -1.0
    trials: list[StudentTrial] = []
    best: tuple[StudentTrial, nn.Module] | None = None
    for number in range(settings.distill_trials):
        proposed = search.ask()
        trial = StudentTrial(number, float(proposed["temperature"]), float(proposed["alpha"]), float("nan"))
        student = train(trial.temperature, trial.alpha)
        trial.metric = evaluate(student, data)[metric]
        search.tell(trial.metric)
        trials.append(trial)
        if best is None or sign * trial.metric > sign * best[0].metric:  # ties keep the earlier trial
            best = (trial, student)
    assert best is not None  # at least one trial ran
    best[0].selected = True
    chosen = {"temperature": best[0].temperature, "alpha": best[0].alpha}
    return Distilled(best[1], config, {**chosen, **base, "trials": settings.distill_trials,
                                       "selected_trial": best[0].number}, trials)
