"""trainers.signals on tiny real models: each statistic against a value computed by hand, and in fit()."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import pytest
import torch
from torch import nn

from trainers import signal_names as names
from trainers.data import TaskData
from trainers.loop import fit
from trainers.signals import TrainingSignals
from trainers.tasks import load_task

torch.set_num_threads(1)


def _mlp(widths: tuple[int, ...], act: type[nn.Module] = nn.ReLU) -> nn.Sequential:
    torch.manual_seed(0)
    layers: list[nn.Module] = []
    for a, b in zip(widths[:-2], widths[1:-1], strict=True):
        layers += [nn.Linear(a, b), act()]
    return nn.Sequential(*layers, nn.Linear(widths[-2], widths[-1]))


def test_gradient_norms_update_ratios_and_weight_norm_match_a_hand_computation() -> None:
    model = _mlp((4, 8, 8, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    signals = TrainingSignals(model, optimizer, steps_per_epoch=1)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    nn.functional.cross_entropy(model(x), y).backward()
    grads = [p.grad.clone() for p in model.parameters()]
    before = [p.detach().clone() for p in model.parameters()]
    optimizer.step()
    out = signals.epoch_metrics()

    def norm(ts: list[torch.Tensor]) -> float:
        return math.sqrt(sum(float(t.pow(2).sum()) for t in ts))

    assert out[names.GRAD_NORM] == pytest.approx(norm(grads)) == pytest.approx(out[names.GRAD_NORM_MAX])
    assert out[names.grad_norm_of("input")] == pytest.approx(norm(grads[:2]))  # first Linear: weight, bias
    assert out[names.grad_norm_of("hidden")] == pytest.approx(norm(grads[2:4]))
    assert out[names.grad_norm_of("output")] == pytest.approx(norm(grads[4:]))
    # plain SGD: the step is lr * gradient
    assert out[names.update_ratio_of("input")] == pytest.approx(0.1 * norm(grads[:2]) / norm(before[:2]), rel=1e-5)
    assert out[names.update_ratio_of("output")] == pytest.approx(0.1 * norm(grads[4:]) / norm(before[4:]), rel=1e-5)
    assert out[names.WEIGHT_NORM] == pytest.approx(norm([p.detach() for p in model.parameters()]))
    assert out[names.NONFINITE_GRAD_STEPS] == 0 and out[names.NONFINITE_WEIGHTS] == 0
    assert names.DEAD_RELU not in out  # no probe given: no unit statistics
    layers = signals.layer_report()["layers"]
    assert [(layer["name"], layer["group"]) for layer in layers] == [("0", "input"), ("2", "hidden"), ("4", "output")]
    assert layers[0]["grad_norm"] == pytest.approx(norm(grads[:2]))


def test_the_norm_measured_before_clipping_is_the_one_clip_compares() -> None:
    model = _mlp((4, 8, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    signals = TrainingSignals(model, optimizer)
    (model(torch.randn(8, 4)).sum() * 100).backward()
    signals.gradients()
    total = float(nn.utils.clip_grad_norm_(model.parameters(), 1.0))
    optimizer.step()
    out = signals.epoch_metrics()
    assert total > 1.0 and out[names.GRAD_NORM] == pytest.approx(total)


def test_dead_and_saturated_units_are_counted_on_the_probe() -> None:
    relu = _mlp((4, 10, 2))
    tanh = _mlp((4, 10, 2), nn.Tanh)
    with torch.no_grad():
        relu[0].bias[:3] = -1e3  # 3 of 10 units can never fire
        tanh[0].weight[:4] *= 1e4  # 4 of 10 units pinned at -1 or +1
    probe = torch.randn(64, 4)
    assert TrainingSignals(relu).epoch_metrics(probe)[names.DEAD_RELU] == pytest.approx(0.3)
    assert TrainingSignals(tanh).epoch_metrics(probe)[names.SATURATED] == pytest.approx(0.4)
    at_init = TrainingSignals(relu, probe=probe).epoch_metrics(probe)
    assert at_init[names.INIT_DEAD_RELU] == pytest.approx(0.3)
    assert relu.training  # the probe ran in eval mode and put the mode back


def test_units_watched_over_several_forwards_are_counted_over_all_their_examples() -> None:
    relu = _mlp((4, 10, 2))
    with torch.no_grad():
        relu[0].bias[:3] = -1e3  # 3 of 10 units can never fire
        relu[0].weight[3], relu[0].bias[3] = torch.tensor([1.0, 0.0, 0.0, 0.0]), -5.0  # fires only when x0 > 5
    first, second = torch.randn(64, 4).clamp(-3, 3), torch.randn(64, 4).clamp(-3, 3)
    second[0, 0] = 10.0
    signals = TrainingSignals(relu)
    with signals.watching():  # e.g. an evaluation in two batches
        relu(first)
        relu(second)
    assert signals.epoch_metrics()[names.DEAD_RELU] == pytest.approx(0.3)
    assert TrainingSignals(relu).epoch_metrics(first)[names.DEAD_RELU] == pytest.approx(0.4)  # one batch alone
    assert not relu[0]._forward_hooks  # nothing left behind


def test_a_known_epoch_length_places_4_gradient_samples_and_the_update_sample_in_the_middle() -> None:
    signals = TrainingSignals(_mlp((4, 8, 3)), None, steps_per_epoch=18)
    assert signals.measured_steps == {0, 4, 9, 13} and signals.sampled == {9}
    assert TrainingSignals(_mlp((4, 8, 3)), None, steps_per_epoch=1).measured_steps == {0}


def test_non_finite_gradients_and_weights_are_counted() -> None:
    model = _mlp((4, 8, 3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    signals = TrainingSignals(model, optimizer)
    model(torch.randn(8, 4)).sum().backward()
    model[0].weight.grad[0, 0] = float("nan")
    signals.gradients()
    with torch.no_grad():
        model[2].weight[0, :2] = float("inf")
    out = signals.epoch_metrics()
    assert out[names.NONFINITE_GRAD_STEPS] == 1 and out[names.NONFINITE_WEIGHTS] == 2


@pytest.fixture(scope="module")
def cancer() -> TaskData:
    data: TaskData = load_task("breast_cancer", {})
    return data


def _fit(config: Mapping[str, Any], data: TaskData) -> list[dict[str, float]]:
    reports: list[dict[str, float]] = []
    checkpoints: list[Any] = []

    def report(metrics: dict[str, float], checkpoint: Any = None) -> None:
        reports.append(metrics)
        checkpoints.append(checkpoint)

    fit({"hidden": 16, "epochs": 2, "lr": 0.01, **config}, report, data=data)
    assert (checkpoints[0] or {}).get("training_signals", {}).get("epoch", 1) == 1
    return reports


def test_fit_logs_the_signals_every_epoch_and_they_do_not_change_training(cancer: TaskData) -> None:
    on, off = _fit({"clip_norm": 0.1}, cancer), _fit({"clip_norm": 0.1, "training_signals": False}, cancer)
    assert all(names.GRAD_NORM in m and names.update_ratio_of("output") in m and names.DEAD_RELU in m for m in on)
    assert names.INIT_DEAD_RELU in on[0] and names.INIT_DEAD_RELU not in on[1]
    assert on[0][names.GRAD_NORM_MAX] > 0.1  # measured before clipping to 0.1
    assert not any(names.is_signal(k) for m in off for k in m)
    timeless = ("epoch_seconds", "latency_ms")
    assert [{k: v for k, v in m.items() if not names.is_signal(k) and k not in timeless} for m in on] == \
        [{k: v for k, v in m.items() if k not in timeless} for m in off]
    amp = _fit({"precision": "bf16"}, cancer)  # autocast: the gradients are fp32, measured after the step's unscale
    assert all(math.isfinite(m[names.GRAD_NORM]) and m[names.NONFINITE_GRAD_STEPS] == 0 for m in amp)
    folds = _fit({"folds": 2, "epochs": 1}, cancer)
    assert names.GRAD_NORM in folds[0] and f"{names.GRAD_NORM}_std" not in folds[0]  # means only, no _std


def test_a_step_the_gradient_scaler_skipped_gives_no_update_ratio() -> None:
    """fp16's scaler skips a step whose gradients overflowed: the built-in loop says so, and the sampled step's
    update is not measured as 0 (the weights did not move because there was no step, not a tiny one)."""
    model = _mlp((4, 8, 3))
    signals = TrainingSignals(model, None, steps_per_epoch=8)
    x, y = torch.randn(16, 4), torch.randint(0, 3, (16,))
    for step in range(8):
        model.zero_grad()
        nn.functional.cross_entropy(model(x), y).backward()
        measured = step in signals.measured_steps
        if measured:
            signals.gradients(step)
        # no optimizer step at all: every step "skipped", the sampled one said so
        if measured:
            signals.stepped(step, skipped=step in signals.sampled)
    out = signals.epoch_metrics()
    assert names.GRAD_NORM in out and signals.sampled <= signals.measured_steps
    assert not any(k.startswith(names.PREFIX + "update_ratio") for k in out)
