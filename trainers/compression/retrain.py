"""Training after compression: a short fine-tune of a pruned model, and knowledge distillation.

Both use the winner's own settings (optimizer, lr, batch size, schedule, regularization) from its
checkpoint config; only the number of epochs changes, and warm-up and patience are switched off
because a few epochs leave no room for them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from trainers import catalog
from trainers.compression.measure import evaluate
from trainers.data import TaskData, batches
from trainers.loop import fit
from trainers.optim import build_optimizer, needs_closure
from trainers.schedules import build_schedule


def short_config(config: Mapping[str, Any], epochs: int) -> dict[str, Any]:
    """The winner's config for a run of ``epochs``: no warm-up, no patience, no cross-validation; a
    constant lr when the winner's schedule does not fit a run this short (milestones past its end)."""
    hp = {**catalog.resolve(config), "epochs": epochs, "warmup_epochs": 0, "patience": 0, "folds": 0}
    probe = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=float(hp["lr"]))
    try:
        build_schedule(probe, hp, steps_per_epoch=1, epochs=max(1, epochs))
    except ValueError:
        hp["scheduler"] = "constant"
    return hp


def finetune(model: nn.Module, config: Mapping[str, Any], data: TaskData, *, epochs: int, metric: str,
             goal: str) -> nn.Module:
    """Train ``model`` (pruning masks attached, so pruned weights stay zero) for ``epochs`` with the
    winner's settings through the built-in ``fit``; keeps the best epoch's weights; in place.

    With ``epochs`` 0 the model is returned untouched.
    """
    if epochs == 0:
        return model
    best: dict[str, Any] = {}

    def report(metrics: dict[str, float], checkpoint: dict[str, Any] | None = None) -> None:
        if checkpoint is not None:
            best["state"] = {k: v.clone() for k, v in checkpoint["model_state"].items()}

    fit(short_config(config, epochs), report, data=data, build=lambda *_: model, metric=metric, goal=goal)
    model.load_state_dict(best["state"])
    return model.eval()


def distill(teacher: nn.Module, student: nn.Module, config: Mapping[str, Any], data: TaskData, *, epochs: int,
            temperature: float, alpha: float, metric: str, goal: str) -> nn.Module:
    """Train ``student`` on ``alpha`` x the teacher's softened outputs + (1 - alpha) x the labels.

    Classification: ``T^2 * KL(softmax(teacher / T) || softmax(student / T))`` (Hinton et al. 2015), the
    T^2 keeping gradient sizes comparable across temperatures; regression: MSE to the teacher's outputs.
    The student trains with the winner's optimizer and schedule for ``epochs`` and keeps its best epoch
    on ``metric`` (validation). In place; returned in evaluation mode.
    """
    hp = short_config(config, epochs)
    torch.manual_seed(int(hp["seed"]))
    classify = data.kind == "classification"
    optimizer = build_optimizer(student.parameters(), hp)
    batch_size = int(hp["batch_size"])
    schedule = build_schedule(optimizer, hp, steps_per_epoch=math.ceil(len(data.y_train) / batch_size), epochs=epochs)
    closure_needed = needs_closure(hp)
    shuffle = torch.Generator().manual_seed(int(hp["seed"]))
    teacher.eval()
    sign = 1.0 if goal == "maximize" else -1.0
    best_value, best_state = -math.inf, {k: v.clone() for k, v in student.state_dict().items()}
    for _ in range(epochs):
        student.train()
        for x, y in batches(data.x_train, data.y_train, batch_size, shuffle):
            with torch.no_grad():
                soft = teacher(x)

            def closure(x: torch.Tensor = x, y: torch.Tensor = y, soft: torch.Tensor = soft) -> torch.Tensor:
                optimizer.zero_grad(set_to_none=True)
                loss = _kd_loss(student(x), soft, y, temperature, alpha, classify)
                loss.backward()
                return loss

            if closure_needed:  # LBFGS re-evaluates the loss itself
                optimizer.step(closure)  # type: ignore[arg-type]
            else:
                closure()
                optimizer.step()
            schedule.step_batch()
        value = evaluate(student, data)[metric]
        schedule.step_epoch(None)
        if sign * value > best_value:
            best_value, best_state = sign * value, {k: v.clone() for k, v in student.state_dict().items()}
    student.load_state_dict(best_state)
    return student.eval()


def _kd_loss(out: torch.Tensor, soft: torch.Tensor, y: torch.Tensor, temperature: float, alpha: float,
             classify: bool) -> torch.Tensor:
    if classify:
        kd = F.kl_div(F.log_softmax(out / temperature, 1), F.softmax(soft / temperature, 1),
                      reduction="batchmean") * temperature**2
        return alpha * kd + (1 - alpha) * F.cross_entropy(out, y)
    out = out.reshape(soft.shape)
    return alpha * F.mse_loss(out, soft) + (1 - alpha) * F.mse_loss(out.reshape(y.shape), y)

