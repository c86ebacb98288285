"""Learning-rate schedules: optional linear warmup, then one closed-form main schedule.

Every schedule is a function of the training clock ``t`` in (fractional) epochs, advanced by one
``1 / steps_per_epoch`` per optimizer step and snapped to whole epochs by ``step_epoch`` (so a
last short batch or a wrong ``steps_per_epoch`` cannot make the clock drift). The main schedule
sees ``tau = t - warmup`` and spans ``T = epochs - warmup``: it starts when warmup ends.
Formulas: docs/optimizers_and_schedules.md. We set ``param_group["lr"]`` ourselves instead of
chaining torch's schedulers: one closed form per schedule is easier to test and to document, and
warmup composes with all of them the same way.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

from torch.optim import Optimizer

from trainers import catalog

# (base lr, epochs since the end of warmup) -> lr
LrFn = Callable[[float, float], float]
_TOL = 1e-9  # "tau reached epoch k" must hold at k exactly despite float division


class _Curve:
    """A closed-form main schedule; validation losses do not affect it."""

    def __init__(self, fn: LrFn) -> None:
        self._fn = fn

    def __call__(self, base: float, tau: float) -> float:
        return self._fn(base, tau)

    def observe(self, val_loss: float | None) -> None:
        """Closed forms ignore the validation loss."""

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Nothing to restore."""


class _Plateau:
    """Reduce-on-plateau with torch's rule (mode min, relative threshold 1e-4, no cooldown)."""

    threshold = 1e-4

    def __init__(self, patience: int, factor: float, min_lr: float) -> None:
        self.patience, self.factor, self.min_lr = patience, factor, min_lr
        self.best = math.inf
        self.bad_epochs = 0
        self.reductions = 0

    def __call__(self, base: float, tau: float) -> float:
        return max(base * self.factor**self.reductions, self.min_lr)

    def observe(self, val_loss: float | None) -> None:
        if val_loss is None:
            raise ValueError("scheduler plateau needs the epoch's val_loss in step_epoch(val_loss), got None")
        if val_loss < self.best * (1 - self.threshold):
            self.best, self.bad_epochs = val_loss, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.reductions += 1
            self.bad_epochs = 0

    def state_dict(self) -> dict[str, Any]:
        return {"best": self.best, "bad_epochs": self.bad_epochs, "reductions": self.reductions}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.best, self.bad_epochs, self.reductions = state["best"], state["bad_epochs"], state["reductions"]


class LrSchedule:
    """Warmup + main schedule driving the lr of every param group of one optimizer.

    ``lr`` is always the lr the *next* optimizer step uses. Read at the end of epoch ``n``
    (1-based), after its last ``step_batch``, it is the schedule at ``t = n`` epochs: the lr the
    next epoch starts with. That is the value the trainer logs as the epoch's ``lr`` metric. Read
    before or after ``step_epoch`` it is the same, except for plateau, where only the value read
    after ``step_epoch`` includes a reduction caused by epoch ``n``'s val_loss.

    Args:
        optimizer: its groups' current lr become the base lrs (kept as ``initial_lr``, as torch does).
        main: the main schedule, called as ``main(base_lr, tau)``.
        steps_per_epoch: optimizer steps per epoch.
        warmup_steps: steps of linear warmup (0 = none).
    """

    def __init__(self, optimizer: Optimizer, main: _Curve | _Plateau, *, steps_per_epoch: int,
                 warmup_steps: int) -> None:
        self.optimizer = optimizer
        self._main = main
        self._steps_per_epoch = steps_per_epoch
        self._warmup_steps = warmup_steps
        self._epoch = 0  # completed epochs
        self._batch = 0  # optimizer steps in the current epoch
        self._bases = [group.setdefault("initial_lr", group["lr"]) for group in optimizer.param_groups]
        self._apply()

    @property
    def lr(self) -> float:
        """The lr of param group 0 for the next optimizer step."""
        return float(self.optimizer.param_groups[0]["lr"])

    @property
    def steps(self) -> int:
        """Optimizer steps on the schedule's clock so far."""
        return self._epoch * self._steps_per_epoch + min(self._batch, self._steps_per_epoch)

    def step_batch(self) -> None:
        """Advance the clock by one optimizer step; call after every ``optimizer.step()``."""
        self._batch += 1
        self._apply()

    def step_epoch(self, val_loss: float | None = None) -> None:
        """Snap the clock to the end of the epoch; call after each epoch's evaluation.

        Args:
            val_loss: the epoch's validation loss; used by plateau only (epochs that end inside
                warmup are not counted).

        Raises:
            ValueError: scheduler plateau and ``val_loss`` is None.
        """
        self._epoch += 1
        self._batch = 0
        if self.steps >= self._warmup_steps:
            self._main.observe(val_loss)
        self._apply()

    def state_dict(self) -> dict[str, Any]:
        """The clock and the plateau state, for checkpoints."""
        return {"epoch": self._epoch, "batch": self._batch, "main": self._main.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore what ``state_dict`` returned and set the lrs accordingly."""
        self._epoch, self._batch = state["epoch"], state["batch"]
        self._main.load_state_dict(state["main"])
        self._apply()

    def _apply(self) -> None:
        for group, base in zip(self.optimizer.param_groups, self._bases, strict=True):
            group["lr"] = self._lr_at(base, self.steps)

    def _lr_at(self, base: float, steps: int) -> float:
        if steps < self._warmup_steps:
            return self._main(base, 0.0) * (steps + 1) / self._warmup_steps
        return self._main(base, (steps - self._warmup_steps) / self._steps_per_epoch)


def build_schedule(optimizer: Optimizer, config: Mapping[str, Any], *, steps_per_epoch: int,
                   epochs: int) -> LrSchedule:
    """The schedule ``config`` asks for (``scheduler``, ``warmup_epochs`` and their settings).

    Args:
        optimizer: built by ``trainers.optim.build_optimizer`` (its lr is already scaled).
        config: trial config; missing settings take their catalog defaults.
        steps_per_epoch: optimizer steps per epoch (batches / gradient-accumulation steps).
        epochs: training length; overrides ``config["epochs"]``.

    Returns:
        An ``LrSchedule`` whose lr is already set for the first step.

    Raises:
        ValueError: unknown scheduler, a setting out of range, or a schedule that does not fit
            in ``epochs`` (warmup too long, milestones or step_size beyond training, ...).
    """
    if steps_per_epoch < 1:
        raise ValueError(f"steps_per_epoch must be >= 1, got {steps_per_epoch}")
    # the schedule scales the optimizer's actual lr: check min_lr against that, not config["lr"]
    group = optimizer.param_groups[0]
    actual = {"epochs": epochs, "lr": group.get("initial_lr", group["lr"]), "lr_scaling": "none"}
    full = {**catalog.resolve(config), **actual}
    problems = catalog.group_problems(full, "scheduler", ("scheduler", "warmup_epochs", "epochs"))
    problems = problems or catalog.schedule_problems(full)
    if problems:
        raise ValueError("; ".join(problems))
    warmup_steps = math.ceil(full["warmup_epochs"] * steps_per_epoch - _TOL)
    # never let the main schedule span less than one step, whatever the rounding
    span = max(epochs - warmup_steps / steps_per_epoch, 1 / steps_per_epoch)
    main = _Plateau(full["plateau_patience"], full["plateau_factor"], full["min_lr"]) \
        if full["scheduler"] == "plateau" else _Curve(_closed_form(full, span))
    return LrSchedule(optimizer, main, steps_per_epoch=steps_per_epoch, warmup_steps=warmup_steps)


def _closed_form(config: Mapping[str, Any], span: float) -> LrFn:
    """The main schedule's formula; ``tau`` is clamped to ``[0, span]``."""
    name, low = config["scheduler"], config["min_lr"]

    def frac(tau: float) -> float:  # fraction of the main schedule done
        return min(max(tau / span, 0.0), 1.0)

    def decay(base: float, shape: float) -> float:  # shape 1 -> base, 0 -> min_lr
        return low + (base - low) * shape

    if name == "constant":
        return lambda base, tau: base
    if name == "step":
        return lambda base, tau: base * config["gamma"] ** math.floor(tau / config["step_size"] + _TOL)
    if name == "multistep":
        return lambda base, tau: base * config["gamma"] ** sum(m <= tau + _TOL for m in config["milestones"])
    if name == "exponential":
        return lambda base, tau: base * config["exp_gamma"] ** math.floor(tau + _TOL)
    if name == "cosine":
        return lambda base, tau: decay(base, _half_cosine(frac(tau)))
    if name == "cosine_restarts":
        restarts = _restarts(config["restart_epochs"], config["restart_mult"])
        return lambda base, tau: decay(base, _half_cosine(restarts(tau)))
    if name == "linear":
        return lambda base, tau: decay(base, 1 - frac(tau))
    if name == "polynomial":
        return lambda base, tau: decay(base, (1 - frac(tau)) ** config["power"])
    if name == "onecycle":
        return _one_cycle(config["pct_start"], config["div_factor"], low, frac)
    raise ValueError(f"scheduler must be one of {', '.join(catalog.SCHEDULERS)}, got {name!r}")


def _half_cosine(x: float) -> float:
    """1 at x = 0 falling to 0 at x = 1 along half a cosine."""
    return (1 + math.cos(math.pi * x)) / 2


def _restarts(first: int, mult: int) -> Callable[[float], float]:
    """SGDR: fraction of the current cycle done; cycles last first, first*mult, first*mult**2, ..."""

    def fraction(tau: float) -> float:
        length = first
        while tau >= length - _TOL:
            tau -= length
            length *= mult
        return max(tau, 0.0) / length

    return fraction


def _one_cycle(pct_start: float, div: float, low: float, frac: Callable[[float], float]) -> LrFn:
    """Cosine from base/div up to base over pct_start of the span, then cosine down to min_lr."""

    def lr(base: float, tau: float) -> float:
        x, start = frac(tau), base / div
        if x < pct_start:
            return base + (start - base) * _half_cosine(x / pct_start)
        return low + (base - low) * _half_cosine((x - pct_start) / (1 - pct_start))

    return lr
