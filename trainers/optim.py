"""Build the optimizer a trial config asks for; LAMB, which torch lacks, lives here too.

Every setting is declared in ``trainers.catalog`` (names, defaults, which optimizer uses it); this
module only maps a resolved config onto torch's constructors. See docs/optimizers_and_schedules.md.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch
from torch.optim import Optimizer

from trainers import catalog

ParamsT = Iterable[torch.Tensor] | Iterable[dict[str, Any]]
_Builder = Callable[[list[Any], Mapping[str, Any], float], Optimizer]


class Lamb(Optimizer):
    """LAMB: Adam's direction rescaled per tensor by a trust ratio (You et al. 2019, Algorithm 2).

    For each parameter tensor ``x`` with gradient ``g`` at step ``t``::

        m = beta1 * m + (1 - beta1) * g            v = beta2 * v + (1 - beta2) * g**2
        m_hat = m / (1 - beta1**t)                 v_hat = v / (1 - beta2**t)
        u = m_hat / (sqrt(v_hat) + eps) + weight_decay * x
        x = x - lr * phi(||x||) / ||u|| * u         phi(z) = min(z, clamp)

    The trust ratio ``phi(||x||) / ||u||`` is taken as 1 when either norm is 0, so that tensors
    initialised to zero (biases) still move; weight decay is decoupled (inside ``u``).

    Args:
        params: parameters or param groups.
        lr: learning rate.
        betas: decay rates of the first and second moment estimates.
        eps: added to the denominator.
        weight_decay: decoupled weight decay (lambda in the paper).
        clamp: upper bound of ``phi``; None leaves ``||x||`` unclamped.

    Raises:
        ValueError: a setting out of its range.
    """

    def __init__(
        self,
        params: ParamsT,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-6,
        weight_decay: float = 0.0,
        clamp: float | None = 10.0,
    ) -> None:
        if lr < 0:
            raise ValueError(f"Lamb needs lr >= 0, got {lr}")
        if not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError(f"Lamb needs 0 <= beta < 1 for both betas, got {betas}")
        if eps < 0 or weight_decay < 0:
            raise ValueError(f"Lamb needs eps >= 0 and weight_decay >= 0, got {eps}, {weight_decay}")
        if clamp is not None and clamp <= 0:
            raise ValueError(f"Lamb needs clamp > 0 or None, got {clamp}")
        defaults = {"lr": lr, "betas": betas, "eps": eps, "weight_decay": weight_decay, "clamp": clamp}
        super().__init__(params, defaults)

    @torch.no_grad()
    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Take one LAMB step.

        Args:
            closure: optional, re-evaluates the model and returns the loss.

        Returns:
            The closure's loss, or None without a closure.

        Raises:
            RuntimeError: a gradient is sparse.
        """
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    self._update(p, p.grad, group)
        return loss

    def _update(self, p: torch.Tensor, grad: torch.Tensor, group: dict[str, Any]) -> None:
        if grad.is_sparse:
            raise RuntimeError("Lamb does not support sparse gradients")
        beta1, beta2 = group["betas"]
        state = self.state[p]
        if not state:
            state["step"] = 0
            state["exp_avg"] = torch.zeros_like(p)
            state["exp_avg_sq"] = torch.zeros_like(p)
        state["step"] += 1
        t, m, v = state["step"], state["exp_avg"], state["exp_avg_sq"]
        m.mul_(beta1).add_(grad, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        m_hat = m / (1 - beta1**t)
        v_hat = v / (1 - beta2**t)
        update = m_hat / (v_hat.sqrt() + group["eps"])
        if group["weight_decay"] != 0:
            update.add_(p, alpha=group["weight_decay"])
        w_norm = p.norm()
        if group["clamp"] is not None:
            w_norm = w_norm.clamp(max=group["clamp"])
        u_norm = update.norm()
        ratio = torch.where((w_norm > 0) & (u_norm > 0), w_norm / u_norm, torch.ones_like(w_norm))
        p.add_(update * ratio, alpha=-group["lr"])


def effective_lr(config: Mapping[str, Any]) -> float:
    """The lr after batch-size scaling (``lr_scaling``, ``base_batch_size``).

    Args:
        config: trial config; missing settings take their catalog defaults.

    Returns:
        ``lr`` for none, ``lr * batch_size / base_batch_size`` for linear, its square root for sqrt.

    Raises:
        ValueError: unknown ``lr_scaling``.
    """
    return catalog.scaled_lr(config)


def needs_closure(config: Mapping[str, Any]) -> bool:
    """Whether the optimizer's ``step`` must be given a closure (LBFGS re-evaluates the loss).

    Args:
        config: trial config.

    Returns:
        True for lbfgs.
    """
    return catalog.resolve(config)["optimizer"] == "lbfgs"


def build_optimizer(params: ParamsT, config: Mapping[str, Any]) -> Optimizer:
    """The optimizer named by ``config["optimizer"]`` with its settings from ``config``.

    The lr is scaled by ``lr_scaling``; param groups that carry their own ``lr`` are scaled by the
    same factor. Settings of other optimizers are ignored here (``catalog.cross_check`` reports them).

    Args:
        params: ``model.parameters()`` or a list of param-group dicts.
        config: trial config; missing settings take their catalog defaults.

    Returns:
        A ready torch optimizer.

    Raises:
        ValueError: unknown optimizer, or settings that break the optimizer's own rules.
    """
    full = catalog.resolve(config)
    name = full["optimizer"]
    builder = _BUILDERS.get(name)
    if builder is None:
        raise ValueError(f"optimizer must be one of {', '.join(catalog.OPTIMIZERS)}, got {name!r}")
    always = ("optimizer", "lr", "weight_decay", "lr_scaling", "batch_size", "base_batch_size")
    problems = catalog.group_problems(full, "optimizer", always)
    problems += catalog.optimizer_problems(full)
    if problems:
        raise ValueError("; ".join(problems))
    factor = effective_lr({**full, "lr": 1.0})
    return builder(_scaled_groups(params, factor), full, effective_lr(full))


def _scaled_groups(params: ParamsT, factor: float) -> list[Any]:
    items: list[Any] = list(params)
    if factor == 1.0 or not items or not isinstance(items[0], dict):
        return items
    return [{**g, "lr": g["lr"] * factor} if "lr" in g else dict(g) for g in items]


def _betas(config: Mapping[str, Any]) -> tuple[float, float]:
    return (config["beta1"], config["beta2"])


def _adam_kw(config: Mapping[str, Any]) -> dict[str, Any]:
    return {"betas": _betas(config), "eps": config["eps"], "weight_decay": config["weight_decay"]}


_BUILDERS: dict[str, _Builder] = {
    "sgd": lambda ps, config, lr: torch.optim.SGD(
        ps, lr=lr, momentum=config["momentum"], dampening=config["dampening"], nesterov=config["nesterov"],
        weight_decay=config["weight_decay"]),
    "adam": lambda ps, config, lr: torch.optim.Adam(
        ps, lr=lr, amsgrad=config["amsgrad"], decoupled_weight_decay=config["decoupled_weight_decay"],
        **_adam_kw(config)),
    "adamw": lambda ps, config, lr: torch.optim.AdamW(ps, lr=lr, amsgrad=config["amsgrad"], **_adam_kw(config)),
    "rmsprop": lambda ps, config, lr: torch.optim.RMSprop(
        ps, lr=lr, alpha=config["alpha"], eps=config["eps"], momentum=config["momentum"], centered=config["centered"],
        weight_decay=config["weight_decay"]),
    "adagrad": lambda ps, config, lr: torch.optim.Adagrad(
        ps, lr=lr, lr_decay=config["lr_decay"], weight_decay=config["weight_decay"]),
    "adadelta": lambda ps, config, lr: torch.optim.Adadelta(
        ps, lr=lr, rho=config["rho"], weight_decay=config["weight_decay"]),
    "adamax": lambda ps, config, lr: torch.optim.Adamax(ps, lr=lr, **_adam_kw(config)),
    "nadam": lambda ps, config, lr: torch.optim.NAdam(
        ps, lr=lr, decoupled_weight_decay=config["decoupled_weight_decay"], **_adam_kw(config)),
    "radam": lambda ps, config, lr: torch.optim.RAdam(
        ps, lr=lr, decoupled_weight_decay=config["decoupled_weight_decay"], **_adam_kw(config)),
    "rprop": lambda ps, config, lr: torch.optim.Rprop(
        ps, lr=lr, etas=(config["eta_minus"], config["eta_plus"]),
        step_sizes=(config["rprop_min_step"], config["rprop_max_step"])),
    "asgd": lambda ps, config, lr: torch.optim.ASGD(
        ps, lr=lr, lambd=config["lambd"], t0=config["t0"], weight_decay=config["weight_decay"]),
    "lbfgs": lambda ps, config, lr: torch.optim.LBFGS(
        ps, lr=lr, max_iter=config["max_iter"], history_size=config["history_size"],
        line_search_fn=None if config["line_search"] == "none" else config["line_search"]),
    "lamb": lambda ps, config, lr: Lamb(ps, lr=lr, **_adam_kw(config)),
}
