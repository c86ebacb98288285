"""trainers.schedules: each schedule's lr trace against its closed form, computed here independently."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn
from torch.optim import lr_scheduler as lrs

from trainers.catalog import SCHEDULERS
from trainers.optim import build_optimizer
from trainers.schedules import LrSchedule, build_schedule

BASE, MIN, EPOCHS, SPE = 0.5, 0.01, 12, 4


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # tiny tensors: intra-op threads only add spin-wait contention on a busy 2-core machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _schedule(hp: dict[str, Any], *, epochs: int = EPOCHS, spe: int = SPE, base: float = BASE) -> LrSchedule:
    optimizer = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=base)
    return build_schedule(optimizer, {"lr": base, **hp}, steps_per_epoch=spe, epochs=epochs)


def _epoch_trace(hp: dict[str, Any], *, epochs: int = EPOCHS, spe: int = SPE,
                 val_losses: list[float] | None = None) -> list[float]:
    """[lr at t=0, lr read at the end of epoch 1, 2, ..., epochs]."""
    schedule = _schedule(hp, epochs=epochs, spe=spe)
    trace = [schedule.lr]
    for epoch in range(epochs):
        for _ in range(spe):
            schedule.step_batch()
        schedule.step_epoch(None if val_losses is None else val_losses[epoch])
        trace.append(schedule.lr)
    return trace


def _cos(x: float) -> float:
    return MIN + (BASE - MIN) * (1 + math.cos(math.pi * x)) / 2


# expected lr at the end of epoch n (no warmup), written out from each schedule's definition
_CLOSED_FORMS: dict[str, tuple[dict[str, Any], Callable[[int], float]]] = {
    "constant": ({}, lambda n: BASE),
    "step": ({"step_size": 5, "gamma": 0.5}, lambda n: BASE * 0.5 ** (n // 5)),
    "multistep": ({"milestones": [3, 7, 8], "gamma": 0.1},
                  lambda n: BASE * 0.1 ** ((n >= 3) + (n >= 7) + (n >= 8))),
    "exponential": ({"exp_gamma": 0.8}, lambda n: BASE * 0.8**n),
    "cosine": ({"min_lr": MIN}, lambda n: _cos(n / EPOCHS)),
    # cycles of 2, 4, 8 epochs start at epochs 0, 2, 6
    "cosine_restarts": ({"min_lr": MIN, "restart_epochs": 2, "restart_mult": 2},
                        lambda n: _cos(n / 2) if n < 2 else _cos((n - 2) / 4) if n < 6
                        else _cos((n - 6) / 8)),
    "linear": ({"min_lr": MIN}, lambda n: BASE - (BASE - MIN) * n / EPOCHS),
    "polynomial": ({"min_lr": MIN, "power": 2.0}, lambda n: MIN + (BASE - MIN) * (1 - n / EPOCHS) ** 2),
    # peak at 0.25 * 12 = 3 epochs: cosine up from BASE / 10, then cosine down to MIN
    "onecycle": ({"min_lr": MIN, "pct_start": 0.25, "div_factor": 10.0},
                 lambda n: BASE - (BASE - BASE / 10) * (1 + math.cos(math.pi * n / 3)) / 2 if n < 3
                 else _cos((n - 3) / 9)),
}


def test_every_scheduler_has_a_closed_form_test() -> None:
    assert set(_CLOSED_FORMS) | {"plateau"} == set(SCHEDULERS)


@pytest.mark.parametrize("name", sorted(_CLOSED_FORMS))
def test_epoch_trace_matches_the_closed_form(name: str) -> None:
    settings_, formula = _CLOSED_FORMS[name]
    trace = _epoch_trace({"scheduler": name, **settings_})
    assert trace == pytest.approx([formula(n) for n in range(EPOCHS + 1)], rel=1e-9, abs=1e-12)


@pytest.mark.parametrize("name", sorted(_CLOSED_FORMS))
def test_warmup_ramps_per_batch_then_the_schedule_runs_on_the_epochs_left(name: str) -> None:
    settings_, formula = _CLOSED_FORMS[name]
    warmup, epochs = 2, EPOCHS + 2  # the main schedule keeps its 12 epochs after 2 of warmup
    schedule = _schedule({"scheduler": name, "warmup_epochs": warmup, **settings_}, epochs=epochs)
    ramp = [schedule.lr]
    for k in range(1, warmup * SPE):
        schedule.step_batch()
        if k % SPE == 0:
            schedule.step_epoch(None)
        ramp.append(schedule.lr)
    start = formula(0)
    assert ramp == pytest.approx([start * k / (warmup * SPE) for k in range(1, warmup * SPE + 1)])
    trace = _epoch_trace({"scheduler": name, "warmup_epochs": warmup, **settings_}, epochs=epochs)
    assert trace[warmup:] == pytest.approx([formula(n) for n in range(EPOCHS + 1)], rel=1e-9, abs=1e-12)


def test_continuous_schedules_move_within_an_epoch() -> None:
    schedule = _schedule({"scheduler": "cosine", "min_lr": MIN})
    for k in range(1, 2 * SPE + 1):
        schedule.step_batch()
        assert schedule.lr == pytest.approx(_cos(k / SPE / EPOCHS))
        if k == SPE:
            schedule.step_epoch(None)


def test_step_schedules_change_only_at_epoch_boundaries() -> None:
    schedule = _schedule({"scheduler": "exponential", "exp_gamma": 0.5})
    lrs = []
    for _ in range(SPE):
        lrs.append(schedule.lr)
        schedule.step_batch()
    assert lrs == [BASE] * SPE
    assert schedule.lr == BASE * 0.5  # the lr the next epoch uses


def test_fractional_warmup_rounds_up_to_whole_steps() -> None:
    trace = []
    schedule = _schedule({"scheduler": "constant", "warmup_epochs": 0.4})  # 1.6 steps -> 2 steps
    for _ in range(3):
        trace.append(schedule.lr)
        schedule.step_batch()
    assert trace == pytest.approx([BASE / 2, BASE, BASE])


def test_step_epoch_snaps_the_clock_when_an_epoch_had_fewer_steps() -> None:
    schedule = _schedule({"scheduler": "linear", "min_lr": 0.0})
    schedule.step_batch()  # only 1 of 4 steps, e.g. steps_per_epoch over-estimated
    schedule.step_epoch(None)
    assert schedule.steps == SPE
    assert schedule.lr == pytest.approx(BASE * (1 - 1 / EPOCHS))


# -- against torch's own schedulers, stepped once per epoch ------------------------------------------


def _torch_trace(make: Callable[[torch.optim.Optimizer], Any], epochs: int,
                 metrics: list[float] | None = None) -> list[float]:
    optimizer = torch.optim.SGD(nn.Linear(2, 1).parameters(), lr=BASE)
    scheduler = make(optimizer)
    trace = [optimizer.param_groups[0]["lr"]]
    for epoch in range(epochs):
        optimizer.step()
        scheduler.step(*([] if metrics is None else [metrics[epoch]]))
        trace.append(optimizer.param_groups[0]["lr"])
    return trace


_TORCH = [
    ({"scheduler": "step", "step_size": 3, "gamma": 0.3}, lambda o: lrs.StepLR(o, 3, 0.3)),
    ({"scheduler": "multistep", "milestones": [2, 5], "gamma": 0.2},
     lambda o: lrs.MultiStepLR(o, [2, 5], 0.2)),
    ({"scheduler": "exponential", "exp_gamma": 0.7}, lambda o: lrs.ExponentialLR(o, 0.7)),
    ({"scheduler": "cosine", "min_lr": MIN},
     lambda o: lrs.CosineAnnealingLR(o, EPOCHS, eta_min=MIN)),
    ({"scheduler": "cosine_restarts", "restart_epochs": 3, "restart_mult": 2, "min_lr": MIN},
     lambda o: lrs.CosineAnnealingWarmRestarts(o, 3, 2, eta_min=MIN)),
    ({"scheduler": "polynomial", "power": 1.5}, lambda o: lrs.PolynomialLR(o, EPOCHS, 1.5)),
]


@pytest.mark.parametrize(("hp", "make"), _TORCH, ids=[str(hp["scheduler"]) for hp, _ in _TORCH])
def test_epoch_trace_agrees_with_torch(hp: dict[str, Any], make: Callable[[Any], Any]) -> None:
    assert _epoch_trace(hp) == pytest.approx(_torch_trace(make, EPOCHS), rel=1e-6, abs=1e-12)


def test_plateau_agrees_with_torch_reduce_on_plateau() -> None:
    losses = [1.0, 0.9, 0.95, 0.91, 0.9, 0.92, 0.5, 0.6, 0.6, 0.6, 0.6, 0.6]
    hp = {"scheduler": "plateau", "plateau_patience": 1, "plateau_factor": 0.5, "min_lr": 0.1}
    expected = _torch_trace(
        lambda o: lrs.ReduceLROnPlateau(o, factor=0.5, patience=1, min_lr=0.1), EPOCHS, losses
    )
    trace = _epoch_trace(hp, val_losses=losses)
    assert trace == pytest.approx(expected)
    assert trace[-1] == 0.1  # floored at min_lr
    assert trace[2] == BASE and trace[4] == BASE / 2  # hand check: 2 bad epochs (3, 4) > patience 1


def test_plateau_ignores_epochs_that_end_inside_warmup() -> None:
    hp = {"scheduler": "plateau", "plateau_patience": 0, "warmup_epochs": 2}
    trace = _epoch_trace(hp, epochs=4, val_losses=[1.0, 2.0, 3.0, 4.0])
    # epoch 1 ends inside warmup (5 of 8 steps); epoch 2 sets best=2.0; epochs 3, 4 are worse -> x0.1 each
    assert trace[1:] == pytest.approx([BASE * 5 / 8, BASE, BASE * 0.1, BASE * 0.01])


def test_plateau_needs_a_val_loss() -> None:
    schedule = _schedule({"scheduler": "plateau"})
    with pytest.raises(ValueError, match=r"plateau needs the epoch's val_loss"):
        schedule.step_epoch(None)
    _schedule({"scheduler": "cosine"}).step_epoch(None)  # the others do not


# -- groups, checkpoints, scaling -------------------------------------------------------------------


def test_each_param_group_follows_the_schedule_from_its_own_lr() -> None:
    model = nn.Linear(2, 1)
    optimizer = torch.optim.SGD([{"params": [model.weight], "lr": 1.0}, {"params": [model.bias], "lr": 0.1}])
    schedule = build_schedule(optimizer, {"lr": 1.0, "scheduler": "step", "step_size": 1, "gamma": 0.5},
                              steps_per_epoch=1, epochs=3)
    schedule.step_batch()
    schedule.step_epoch(None)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([0.5, 0.05])
    assert schedule.lr == 0.5


def test_state_dict_restores_the_clock_and_the_plateau() -> None:
    hp = {"scheduler": "plateau", "plateau_patience": 0}
    first = _schedule(hp)
    for loss in (1.0, 2.0, 3.0):
        first.step_batch()
        first.step_epoch(loss)
    second = _schedule(hp)
    second.load_state_dict(first.state_dict())
    assert second.lr == first.lr == pytest.approx(BASE * 0.01)
    second.step_epoch(4.0)
    first.step_epoch(4.0)
    assert second.lr == first.lr


def test_schedule_starts_from_the_batch_size_scaled_lr() -> None:
    hp = {"optimizer": "sgd", "lr": 0.1, "lr_scaling": "linear", "batch_size": 256, "base_batch_size": 64,
          "scheduler": "linear", "min_lr": 0.0}
    optimizer = build_optimizer(nn.Linear(2, 1).parameters(), hp)
    schedule = build_schedule(optimizer, hp, steps_per_epoch=1, epochs=4)
    schedule.step_batch()
    schedule.step_epoch(None)
    assert schedule.lr == pytest.approx(0.4 * 3 / 4)


# -- bad input ------------------------------------------------------------------------------------


_RESTART = {"scheduler": "cosine_restarts", "restart_epochs": 10}
_MULTI = {"scheduler": "multistep"}


@pytest.mark.parametrize(
    ("hp", "epochs", "match"),
    [
        ({"scheduler": "cosine_annealing"}, 10, r"scheduler: expected one of constant, .*'cosine_annealing'"),
        ({"warmup_epochs": 5}, 3, r"warmup_epochs \(5\) must be smaller than epochs \(3\)"),
        ({"warmup_epochs": 3}, 3, r"warmup_epochs \(3\) must be smaller than epochs \(3\)"),
        ({**_MULTI, "milestones": [4, 12]}, 10, r"milestones must lie between 0 and .*\[12\]"),
        ({"scheduler": "multistep", "milestones": [4, 8], "warmup_epochs": 3}, 10,
         r"epochs - warmup_epochs \(7\) exclusive, got \[8\]"),
        ({**_MULTI, "milestones": [6, 4]}, 10, r"milestones must be strictly increasing"),
        ({"scheduler": "multistep", "milestones": []}, 10, r"milestones must list at least one epoch"),
        ({"scheduler": "step", "step_size": 12}, 10, r"step_size \(12\) must be smaller than epochs - "),
        (_RESTART, 10, r"restart_epochs \(10\) must be smaller"),
        ({"scheduler": "cosine", "min_lr": 1.0}, 10, r"min_lr \(1.0\) must not exceed the .*lr \(0.5\)"),
        ({"scheduler": "onecycle", "pct_start": 1.0}, 10, r"pct_start: must be <= 0.99"),
        ({"scheduler": "step", "gamma": -1.0}, 10, r"gamma: must be >= 0.0, got -1.0"),
    ],
)
def test_schedules_that_do_not_fit_are_rejected(hp: dict[str, Any], epochs: int, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _schedule(hp, epochs=epochs)


def test_steps_per_epoch_must_be_positive() -> None:
    with pytest.raises(ValueError, match=r"steps_per_epoch must be >= 1, got 0"):
        _schedule({}, spe=0)


# -- on a real model ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCHEDULERS)
def test_every_schedule_trains_a_small_classifier(name: str) -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(96, 4, generator=gen)
    y = (x[:, 0] - x[:, 2] > 0).long()
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))
    hp = {"optimizer": "sgd", "lr": 0.2, "scheduler": name, "warmup_epochs": 1, "milestones": [3],
          "step_size": 2, "restart_epochs": 2}
    optimizer = build_optimizer(model.parameters(), hp)
    schedule = build_schedule(optimizer, hp, steps_per_epoch=4, epochs=6)
    loss_fn = nn.CrossEntropyLoss()
    losses, lrs = [], []
    for _ in range(6):
        for xb, yb in zip(x.split(24), y.split(24), strict=True):
            optimizer.zero_grad()
            loss_fn(model(xb), yb).backward()
            optimizer.step()
            schedule.step_batch()
        with torch.no_grad():
            losses.append(float(loss_fn(model(x), y)))
        schedule.step_epoch(losses[-1])
        lrs.append(schedule.lr)
    assert losses[-1] < 0.5 * losses[0], losses
    assert all(0 <= lr <= 0.2 for lr in lrs)


@settings(max_examples=60, deadline=None)
@given(
    name=st.sampled_from(SCHEDULERS),
    epochs=st.integers(2, 8),
    spe=st.integers(1, 5),
    warmup_frac=st.floats(0.0, 0.9),
    min_frac=st.floats(0.0, 1.0),
)
def test_lr_stays_between_zero_and_the_base_lr(name: str, epochs: int, spe: int, warmup_frac: float,
                                                min_frac: float) -> None:
    hp = {"scheduler": name, "warmup_epochs": warmup_frac * (epochs - 1), "min_lr": min_frac * BASE,
          "milestones": [1], "step_size": 1, "restart_epochs": 1, "plateau_patience": 0}
    schedule = _schedule(hp, epochs=epochs, spe=spe)
    for epoch in range(epochs + 1):  # one epoch more than planned: the lr must stay sane
        for _ in range(spe):
            assert 0 <= schedule.lr <= BASE * (1 + 1e-12)
            schedule.step_batch()
        schedule.step_epoch(float(epoch))
