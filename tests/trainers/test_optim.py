"""trainers.optim: every optimizer is built from a trial config and trains a real small model."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch
from torch import nn

from trainers.catalog import OPTIMIZERS
from trainers.optim import Lamb, build_optimizer, effective_lr, needs_closure

# lrs at which each optimizer makes clear progress in 40 full-batch steps on the problems below
_GOOD_LR = {"sgd": 0.05, "adadelta": 10.0, "adagrad": 0.2, "lbfgs": 0.5, "radam": 0.05, "lamb": 0.1}


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # tiny tensors: intra-op threads only add spin-wait contention on a busy 2-core machine
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _regression() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(128, 6, generator=gen)
    return x, x @ torch.randn(6, 1, generator=gen) + 0.5


def _classification() -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(128, 4, generator=gen)
    return x, (x[:, 0] + x[:, 1] > 0).long()


def _train(hp: dict[str, Any], model: nn.Module, x: torch.Tensor, y: torch.Tensor,
           loss_fn: nn.Module, steps: int = 40) -> tuple[float, float]:
    """Full-batch training; returns the loss before and after."""
    optimizer = build_optimizer(model.parameters(), hp)

    def closure() -> Any:  # torch's stubs want float; optimizers take the loss tensor
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        return loss

    with torch.no_grad():
        before = float(loss_fn(model(x), y))
    for _ in range(steps):
        if needs_closure(hp):
            optimizer.step(closure)
        else:
            closure()
            optimizer.step()
    with torch.no_grad():
        return before, float(loss_fn(model(x), y))


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_reduces_a_regression_loss(name: str) -> None:
    torch.manual_seed(0)
    x, y = _regression()
    before, after = _train({"optimizer": name, "lr": _GOOD_LR.get(name, 0.05)}, nn.Linear(6, 1), x, y,
                           nn.MSELoss())
    assert after < 0.5 * before, (name, before, after)


@pytest.mark.parametrize("name", OPTIMIZERS)
def test_every_optimizer_reduces_a_classification_loss(name: str) -> None:
    torch.manual_seed(0)
    x, y = _classification()
    model = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 2))
    before, after = _train({"optimizer": name, "lr": _GOOD_LR.get(name, 0.05)}, model, x, y,
                           nn.CrossEntropyLoss())
    assert after < 0.8 * before, (name, before, after)


@pytest.mark.parametrize(
    ("hp", "cls", "expected"),
    [
        ({"optimizer": "sgd", "momentum": 0.8, "dampening": 0.1, "weight_decay": 0.01}, torch.optim.SGD,
         {"momentum": 0.8, "dampening": 0.1, "nesterov": False, "weight_decay": 0.01}),
        ({"optimizer": "sgd", "momentum": 0.7, "nesterov": True}, torch.optim.SGD,
         {"momentum": 0.7, "nesterov": True}),
        ({"optimizer": "adam", "beta1": 0.8, "beta2": 0.99, "eps": 1e-6, "amsgrad": True}, torch.optim.Adam,
         {"betas": (0.8, 0.99), "eps": 1e-6, "amsgrad": True, "decoupled_weight_decay": False}),
        ({"optimizer": "adam", "weight_decay": 0.1, "decoupled_weight_decay": True}, torch.optim.Adam,
         {"weight_decay": 0.1, "decoupled_weight_decay": True}),
        ({"optimizer": "adamw", "weight_decay": 0.05}, torch.optim.AdamW, {"weight_decay": 0.05}),
        ({"optimizer": "rmsprop", "alpha": 0.9, "momentum": 0.5, "centered": True}, torch.optim.RMSprop,
         {"alpha": 0.9, "momentum": 0.5, "centered": True}),
        ({"optimizer": "adagrad", "lr_decay": 0.01}, torch.optim.Adagrad, {"lr_decay": 0.01}),
        ({"optimizer": "adadelta", "rho": 0.8}, torch.optim.Adadelta, {"rho": 0.8}),
        ({"optimizer": "adamax", "beta1": 0.5}, torch.optim.Adamax, {"betas": (0.5, 0.999)}),
        ({"optimizer": "nadam", "decoupled_weight_decay": True}, torch.optim.NAdam,
         {"decoupled_weight_decay": True}),
        ({"optimizer": "radam", "eps": 1e-7}, torch.optim.RAdam, {"eps": 1e-7}),
        ({"optimizer": "rprop", "eta_minus": 0.4, "eta_plus": 1.5, "rprop_min_step": 1e-5,
          "rprop_max_step": 10.0}, torch.optim.Rprop, {"etas": (0.4, 1.5), "step_sizes": (1e-5, 10.0)}),
        ({"optimizer": "asgd", "lambd": 1e-3, "t0": 100.0}, torch.optim.ASGD, {"lambd": 1e-3, "t0": 100.0}),
        ({"optimizer": "lbfgs", "history_size": 7, "max_iter": 3, "line_search": "none"}, torch.optim.LBFGS,
         {"history_size": 7, "max_iter": 3, "line_search_fn": None}),
        ({"optimizer": "lbfgs"}, torch.optim.LBFGS, {"line_search_fn": "strong_wolfe"}),
        ({"optimizer": "lamb", "beta2": 0.98, "weight_decay": 0.01}, Lamb,
         {"betas": (0.9, 0.98), "weight_decay": 0.01, "eps": 1e-8}),
    ],
)
def test_settings_reach_the_torch_optimizer(hp: dict[str, Any], cls: type, expected: dict[str, Any]) -> None:
    optimizer = build_optimizer(nn.Linear(2, 1).parameters(), {**hp, "lr": 0.01})
    assert type(optimizer) is cls
    group = optimizer.param_groups[0]
    assert group["lr"] == 0.01
    for key, value in expected.items():
        assert group[key] == value, key


def test_settings_of_other_optimizers_are_ignored_by_the_builder() -> None:
    # cross_check reports them; the builder must still work on a resolved config holding them all
    optimizer = build_optimizer(nn.Linear(2, 1).parameters(), {"optimizer": "adam", "momentum": 0.3})
    assert "momentum" not in optimizer.param_groups[0]


@pytest.mark.parametrize(
    ("scaling", "batch_size", "expected"),
    [("none", 256, 0.1), ("linear", 256, 0.4), ("sqrt", 256, 0.2), ("linear", 32, 0.05), ("sqrt", 16, 0.05)],
)
def test_effective_lr_scales_with_batch_size(scaling: str, batch_size: int, expected: float) -> None:
    hp = {"lr": 0.1, "lr_scaling": scaling, "batch_size": batch_size, "base_batch_size": 64}
    assert effective_lr(hp) == pytest.approx(expected)
    optimizer = build_optimizer(nn.Linear(2, 1).parameters(), {**hp, "optimizer": "sgd"})
    assert optimizer.param_groups[0]["lr"] == pytest.approx(expected)


def test_param_groups_with_their_own_lr_are_scaled_too() -> None:
    model = nn.Linear(2, 1)
    groups: list[dict[str, Any]] = [{"params": [model.weight], "lr": 0.5}, {"params": [model.bias]}]
    hp = {"optimizer": "sgd", "lr": 0.1, "lr_scaling": "linear", "batch_size": 128, "base_batch_size": 64}
    optimizer = build_optimizer(groups, hp)
    assert [g["lr"] for g in optimizer.param_groups] == pytest.approx([1.0, 0.2])
    assert groups[0]["lr"] == 0.5  # the caller's dicts are not modified


def test_needs_closure_only_for_lbfgs() -> None:
    assert [name for name in OPTIMIZERS if needs_closure({"optimizer": name})] == ["lbfgs"]
    assert not needs_closure({})  # default adam


def test_lbfgs_solves_least_squares_through_step_closure() -> None:
    x, y = _regression()
    model = nn.Linear(6, 1)
    optimizer = build_optimizer(model.parameters(), {"optimizer": "lbfgs", "lr": 1.0, "max_iter": 50})
    losses: list[float] = []

    def closure() -> Any:  # torch's stubs want float; optimizers take the loss tensor
        optimizer.zero_grad()
        loss = nn.functional.mse_loss(model(x), y)
        loss.backward()
        losses.append(loss.item())
        return loss

    first = optimizer.step(closure)
    optimizer.step(closure)
    assert len(losses) > 2  # LBFGS re-evaluates the closure within a step
    assert first is not None and losses[0] > 1.0
    assert losses[-1] < 1e-6


@pytest.mark.parametrize(
    ("hp", "match"),
    [
        ({"optimizer": "adagrad2"}, r"optimizer must be one of sgd, adam, .*got 'adagrad2'"),
        ({"optimizer": "sgd", "nesterov": True, "momentum": 0.0}, r"nesterov needs momentum > 0"),
        ({"optimizer": "lbfgs", "weight_decay": 0.1}, r"weight_decay must be 0 for optimizer lbfgs"),
        ({"optimizer": "rprop", "rprop_min_step": 2.0, "rprop_max_step": 1.0}, r"rprop_min_step \(2.0\)"),
        ({"optimizer": "adam", "beta1": 1.5}, r"beta1: must be <= 0.9999, got 1.5"),
        ({"optimizer": "sgd", "lr": -0.1}, r"lr: must be >= 0.0, got -0.1"),
        ({"optimizer": "sgd", "lr_scaling": "cubic"}, r"lr_scaling: expected one of none, linear, sqrt"),
    ],
)
def test_bad_settings_are_rejected(hp: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        build_optimizer(nn.Linear(2, 1).parameters(), hp)


# -- LAMB against the paper's update rule (You et al. 2019, Algorithm 2) -------------------------------


def _norm(v: list[float]) -> float:
    return math.sqrt(sum(e * e for e in v))


def _lamb_reference(x: list[float], grads: list[list[float]], lr: float, b1: float, b2: float, eps: float,
                    wd: float, clamp: float | None) -> list[float]:
    """Algorithm 2 written out on plain floats, one tensor (= one layer)."""
    m, v = [0.0] * len(x), [0.0] * len(x)
    for t, g in enumerate(grads, start=1):
        m = [b1 * mi + (1 - b1) * gi for mi, gi in zip(m, g, strict=True)]
        v = [b2 * vi + (1 - b2) * gi * gi for vi, gi in zip(v, g, strict=True)]
        r = [(mi / (1 - b1**t)) / (math.sqrt(vi / (1 - b2**t)) + eps) for mi, vi in zip(m, v, strict=True)]
        u = [ri + wd * xi for ri, xi in zip(r, x, strict=True)]
        phi = _norm(x) if clamp is None else min(_norm(x), clamp)
        ratio = phi / _norm(u)
        x = [xi - lr * ratio * ui for xi, ui in zip(x, u, strict=True)]
    return x


def _lamb_steps(x: list[float], grads: list[list[float]], **kwargs: Any) -> list[float]:
    p = torch.tensor(x, dtype=torch.float64, requires_grad=True)
    optimizer = Lamb([p], **kwargs)
    for g in grads:
        p.grad = torch.tensor(g, dtype=torch.float64)
        optimizer.step()
    return p.detach().tolist()


def test_lamb_first_step_by_hand() -> None:
    # t = 1: bias correction makes m_hat = g and v_hat = g**2, so r = g / (|g| + eps)
    x, g, lr, wd, eps = [3.0, 4.0], [0.5, -2.0], 0.1, 0.01, 1e-6
    r = [0.5 / (0.5 + eps), -2.0 / (2.0 + eps)]
    u = [r[0] + wd * 3.0, r[1] + wd * 4.0]
    ratio = 5.0 / math.hypot(*u)  # ||x|| = 5
    expected = [3.0 - lr * ratio * u[0], 4.0 - lr * ratio * u[1]]
    got = _lamb_steps(x, [g], lr=lr, betas=(0.9, 0.999), eps=eps, weight_decay=wd)
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("clamp", [10.0, 1.0, None])
def test_lamb_several_steps_match_the_paper(clamp: float | None) -> None:
    x, grads = [1.0, -2.0, 0.5], [[0.3, 0.1, -0.2], [0.1, -0.4, 0.2], [-0.5, 0.2, 0.05]]
    expected = _lamb_reference(x, grads, lr=0.05, b1=0.9, b2=0.99, eps=1e-8, wd=0.1, clamp=clamp)
    got = _lamb_steps(x, grads, lr=0.05, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1, clamp=clamp)
    assert got == pytest.approx(expected, rel=1e-12)


def test_lamb_trust_ratio_is_one_for_zero_weights() -> None:
    got = _lamb_steps([0.0, 0.0], [[1.0, -1.0]], lr=0.1, eps=0.0)
    assert got == pytest.approx([-0.1, 0.1])  # plain Adam-direction step of size lr


def test_lamb_step_returns_the_closure_loss() -> None:
    p = nn.Parameter(torch.ones(3))
    optimizer = Lamb([p])

    def closure() -> Any:  # torch's stubs want float; optimizers take the loss tensor
        optimizer.zero_grad()
        loss = (p**2).sum()
        loss.backward()
        return loss

    assert float(optimizer.step(closure).detach()) == 3.0
    assert bool((p < 1).all())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"lr": -1.0}, "lr >= 0"), ({"betas": (1.0, 0.9)}, "0 <= beta < 1"), ({"eps": -1.0}, "eps >= 0"),
     ({"clamp": 0.0}, "clamp > 0")],
)
def test_lamb_rejects_bad_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Lamb([nn.Parameter(torch.ones(1))], **kwargs)


def test_lamb_rejects_sparse_gradients() -> None:
    emb = nn.Embedding(4, 2, sparse=True)
    emb(torch.tensor([1])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        Lamb(emb.parameters()).step()
